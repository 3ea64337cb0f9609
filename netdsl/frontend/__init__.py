"""Front ends: the text (.net) and YAML forms, both lowered by one shared lowering into the graph IR."""
