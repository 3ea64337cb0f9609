// Quantize, q = saturate(round_half_even(x / scale)), and the fused Quantize -> Dequantize
// (fake quantization) that never materialises q. Instantiated by name from
// netdsl/backends/cuda.py: quantize_kernel<In, Out, Mode>, quantize_dequantize_kernel<In, Q, Mode>
// (output type = In); the scale type (float32/float16/bfloat16) is a run-time ScaleKind.
#include "common.cuh"

namespace netdsl {

struct QuotientScale {
  float s, r;  // scale and its safe reciprocal (NaN: always divide)
};

NETDSL_D QuotientScale quotient_scale(const ScaleTensor& scale, u32 i, bool reciprocal) {
  const float s = scale[i];
  return {s, reciprocal ? safe_reciprocal(s) : float_of(kFloat32NaN)};
}

template <class InT, class OutT>
struct QuantizeOp {
  using In = InT;
  using Out = OutT;
  using Scale = QuotientScale;
  ScaleTensor scale_tensor;
  NETDSL_D Scale scale(u32 i, bool reciprocal) const { return quotient_scale(scale_tensor, i, reciprocal); }
  NETDSL_D float apply(float v, const Scale& s) const { return quantize_value(v, s.s); }
  NETDSL_D void apply16(const float (&v)[16], const Scale& s, float (&res)[16]) const {
    quantize16(v, s.s, s.r, max_magnitude16(v), res);
  }
};

template <class InT, class QT>
struct QuantizeDequantizeOp {
  using In = InT;
  using Out = InT;
  struct Scale {
    QuotientScale q;
    float dq;
  };
  ScaleTensor scale_tensor, dequant_scale_tensor;
  NETDSL_D Scale scale(u32 i, bool reciprocal) const {
    return {quotient_scale(scale_tensor, i, reciprocal), dequant_scale_tensor[i]};
  }
  NETDSL_D static float round_trip(float q, float dq) { return mul_rn(QT::decode(QT::encode(q)), dq); }
  NETDSL_D float apply(float v, const Scale& s) const { return round_trip(quantize_value(v, s.q.s), s.dq); }
  NETDSL_D void apply16(const float (&v)[16], const Scale& s, float (&res)[16]) const {
    quantize16(v, s.q.s, s.q.r, max_magnitude16(v), res);
#pragma unroll
    for (int j = 0; j < 16; ++j) res[j] = round_trip(res[j], s.dq);
  }
};

template <class In, class Out, int kMode>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    quantize_kernel(const u8* __restrict__ x, const u8* __restrict__ scale, u32 scale_kind,
                    const u32* __restrict__ map, u8* __restrict__ out, u32 n, u32 chunk_step) {
  const QuantizeOp<In, Out> op{{scale, scale_kind}};
  elementwise<QuantizeOp<In, Out>, kMode>(op, x, out, map, n, chunk_step);
}

template <class In, class Q, int kMode>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    quantize_dequantize_kernel(const u8* __restrict__ x, const u8* __restrict__ scale,
                               const u8* __restrict__ dequant_scale, u32 scale_kind,
                               const u32* __restrict__ map, u8* __restrict__ out, u32 n, u32 chunk_step) {
  const QuantizeDequantizeOp<In, Q> op{{scale, scale_kind}, {dequant_scale, scale_kind}};
  elementwise<QuantizeDequantizeOp<In, Q>, kMode>(op, x, out, map, n, chunk_step);
}

}  // namespace netdsl
