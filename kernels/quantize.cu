// Quantize, q = saturate(round_half_even(x / scale)), and the fused Quantize -> Dequantize
// (fake quantization) that never materialises q. Instantiated by name from
// netdsl/backends/cupy/abi.py: quantize_kernel<In, Out, Mode>, quantize_dequantize_kernel<In, Q, Out, Mode>;
// the scale types (quantize: float32/float16/bfloat16; dequantize: those or e8m0) are run-time
// ScaleKinds.
#include "common.cuh"

namespace netdsl {

struct QuotientScale {
  float s, r;  // scale and its safe reciprocal (NaN: always divide)
};

NETDSL_D QuotientScale quotient_scale(const ScaleTensor& scale, u32 raw, bool reciprocal) {
  const float s = scale.value(raw);
  return {s, reciprocal ? safe_reciprocal(s) : float_of(kFloat32NaN)};
}

template <class InT, class OutT>
struct QuantizeOp {
  using In = InT;
  using Out = OutT;
  using Scale = QuotientScale;
  using Raw = u32;
  static constexpr u32 kScaleAhead = kScaleAheadQuantize;
  ScaleTensor scale_tensor;
  NETDSL_D Raw load(u32 i) const { return scale_tensor.load(i); }
  NETDSL_D Scale scale_of(Raw raw, bool reciprocal) const { return quotient_scale(scale_tensor, raw, reciprocal); }
  NETDSL_D Scale scale(u32 i, bool reciprocal) const { return scale_of(load(i), reciprocal); }
  NETDSL_D float apply(float v, const Scale& s) const { return quantize_value(v, s.s); }
  // The NaN-propagating amax sends a chunk holding NaN to the division path, so a true flag from
  // quantize16 means no quotient is NaN.
  NETDSL_D bool apply16(const float (&v)[16], const Scale& s, float (&res)[16]) const {
    return quantize16(v, s.s, s.r, max_abs_nan16(v), res);
  }
};

// Dequantize(Quantize(x)): q = saturate(round_half_even(x / s)) in Q, then round_to(Out, fl32(q * dq)).
template <class InT, class QT, class OutT>
struct QuantizeDequantizeOp {
  using In = InT;
  using Out = OutT;
  struct Scale {
    QuotientScale q;
    float dq;
  };
  struct Raw {
    u32 q, dq;
  };
  static constexpr u32 kScaleAhead = kScaleAheadQuantizeDequantize;
  ScaleTensor scale_tensor, dequant_scale_tensor;
  NETDSL_D Raw load(u32 i) const { return {scale_tensor.load(i), dequant_scale_tensor.load(i)}; }
  NETDSL_D Scale scale_of(const Raw& raw, bool reciprocal) const {
    return {quotient_scale(scale_tensor, raw.q, reciprocal), dequant_scale_tensor.value(raw.dq)};
  }
  NETDSL_D Scale scale(u32 i, bool reciprocal) const { return scale_of(load(i), reciprocal); }
  NETDSL_D static float round_trip(float q, float dq) { return mul_rn(QT::decode(QT::encode(q)), dq); }
  NETDSL_D float apply(float v, const Scale& s) const { return round_trip(quantize_value(v, s.q.s), s.dq); }
  NETDSL_D bool apply16(const float (&v)[16], const Scale& s, float (&res)[16]) const {
    if (quantize16(v, s.q.s, s.q.r, max_abs_nan16(v), res)) {
      // No quotient is NaN: the float-only round trips (checked on the host against
      // decode(encode(q)) for every float32), and with a finite dq no product is NaN either.
#pragma unroll
      for (int j = 0; j < 16; ++j) res[j] = mul_rn(QT::round_trip_nonan(res[j]), s.dq);
      return is_finite(s.dq);
    }
#pragma unroll
    for (int j = 0; j < 16; ++j) res[j] = round_trip(res[j], s.dq);
    return false;
  }
};

template <class In, class Out, int kMode>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    quantize_kernel(const u8* __restrict__ x, const u8* __restrict__ scale, u32 scale_kind,
                    const u32* __restrict__ map, u8* __restrict__ out, u32 n, u32 chunk_step) {
  const QuantizeOp<In, Out> op{{scale, scale_kind}};
  elementwise<QuantizeOp<In, Out>, kMode>(op, x, out, map, n, chunk_step);
}

template <class In, class Q, class Out, int kMode>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    quantize_dequantize_kernel(const u8* __restrict__ x, const u8* __restrict__ scale, u32 scale_kind,
                               const u8* __restrict__ dequant_scale, u32 dequant_scale_kind,
                               const u32* __restrict__ map, u8* __restrict__ out, u32 n, u32 chunk_step) {
  const QuantizeDequantizeOp<In, Q, Out> op{{scale, scale_kind}, {dequant_scale, dequant_scale_kind}};
  elementwise<QuantizeDequantizeOp<In, Q, Out>, kMode>(op, x, out, map, n, chunk_step);
}

}  // namespace netdsl
