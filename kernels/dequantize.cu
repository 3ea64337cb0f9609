// Dequantize, y = round_to(Out, fl32(float32(q) * scale)): the product rounds to float32, then
// (float16/bfloat16 output) rounds again, as a float32 multiply followed by a cast does.
// Instantiated by name from netdsl/backends/cupy/abi.py:
//   dequantize_kernel<Q, Out, Mode>          the scale type (float32/float16/bfloat16/e8m0) is a
//                                            run-time ScaleKind;
//   dequantize_double_kernel<Q, Out, Mode>   the NVFP4 chain sf = Dequantize(codes, dqs) (dqs
//                                            per-tensor, sf in float32/float16/bfloat16), then
//                                            y = Dequantize(q, sf), in one pass without storing sf:
//                                            S = round_to(sf type, fl32(decode(code) * dqs)) per
//                                            block, y = round_to(Out, fl32(float32(q) * S)).
#include "common.cuh"

namespace netdsl {

// The block scale of the chain: codes of a quantized type (run-time CodeKind) dequantized with a
// per-tensor scale and rounded to the intermediate's float type -- the bits the unfused first
// Dequantize would have stored and the second one would have read.
enum CodeKind : u32 { kCodeInt8 = 0, kCodeInt4 = 1, kCodeFp8 = 2, kCodeFp4 = 3 };

NETDSL_D float round_to_kind(float v, u32 kind) {
  switch (kind) {
    case kScaleFloat16: return type::float16::decode(type::float16::encode(v));
    case kScaleBFloat16: return type::bfloat16::decode(type::bfloat16::encode(v));
    default: return v;  // float32: a NaN stays NaN, and only its being NaN matters downstream
  }
}

struct DoubleScale {
  const u8* __restrict__ codes;
  u32 code_kind;
  float dqs;  // the per-tensor scale of the first Dequantize, widened
  u32 sf_kind;  // ScaleKind of the intermediate: float32, float16 or bfloat16
  NETDSL_D float operator[](u32 i) const {
    float c;
    switch (code_kind) {
      case kCodeInt8: c = load_one<type::int8>(codes, i); break;
      case kCodeInt4: c = load_one<type::int4>(codes, i); break;
      case kCodeFp4: c = load_one<type::fp4>(codes, i); break;
      default: c = load_one<type::fp8>(codes, i); break;
    }
    return round_to_kind(mul_rn(c, dqs), sf_kind);
  }
};

template <class QT, class OutT, class ScaleSource>
struct DequantizeOp {
  using In = QT;
  using Out = OutT;
  struct Scale {
    float s;
  };
  ScaleSource scale_tensor;
  NETDSL_D Scale scale(u32 i, bool) const { return {scale_tensor[i]}; }
  NETDSL_D float apply(float v, const Scale& s) const { return mul_rn(v, s.s); }
  NETDSL_D bool apply16(const float (&v)[16], const Scale& s, float (&res)[16]) const {
#pragma unroll
    for (int j = 0; j < 16; ++j) res[j] = mul_rn(v[j], s.s);
    if constexpr (same_type<QT, type::fp8>) {
      return !is_nan(max_abs_nan16(res));  // fp8 has NaN codes
    } else {
      return is_finite(s.s);  // integer and fp4 codes are finite: only 0 * Inf or a NaN scale is NaN
    }
  }
};

template <class Q, class Out, int kMode>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    dequantize_kernel(const u8* __restrict__ q, const u8* __restrict__ scale, u32 scale_kind,
                      const u32* __restrict__ map, u8* __restrict__ out, u32 n, u32 chunk_step) {
  using Op = DequantizeOp<Q, Out, ScaleTensor>;
  const Op op{{scale, scale_kind}};
  elementwise<Op, kMode>(op, q, out, map, n, chunk_step);
}

template <class Q, class Out, int kMode>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    dequantize_double_kernel(const u8* __restrict__ q, const u8* __restrict__ codes, u32 code_kind,
                             const u8* __restrict__ dqs, u32 dqs_kind, u32 sf_kind,
                             const u32* __restrict__ map, u8* __restrict__ out, u32 n, u32 chunk_step) {
  using Op = DequantizeOp<Q, Out, DoubleScale>;
  const ScaleTensor dqs_tensor{dqs, dqs_kind};
  const Op op{{codes, code_kind, dqs_tensor[0], sf_kind}};
  elementwise<Op, kMode>(op, q, out, map, n, chunk_step);
}

}  // namespace netdsl
