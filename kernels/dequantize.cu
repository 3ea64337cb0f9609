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

// load(i) and value(raw) split as in ScaleTensor: the byte holding code i and the code's shift in it.
struct DoubleScale {
  const u8* __restrict__ codes;
  u32 code_kind;
  float dqs;  // the per-tensor scale of the first Dequantize, widened
  u32 sf_kind;  // ScaleKind of the intermediate: float32, float16 or bfloat16
  struct Raw {
    u32 byte, shift;
  };
  NETDSL_D Raw load(u32 i) const {
    const bool nibble = code_kind == kCodeInt4 || code_kind == kCodeFp4;
    return nibble ? Raw{__ldg(codes + i / 2u), 4u * (i % 2u)} : Raw{__ldg(codes + i), 0u};
  }
  NETDSL_D float value(const Raw& raw) const {
    const u32 code = raw.byte >> raw.shift;  // decode reads the low 4 or 8 bits
    float c;
    switch (code_kind) {
      case kCodeInt8: c = type::int8::decode(code); break;
      case kCodeInt4: c = type::int4::decode(code); break;
      case kCodeFp4: c = type::fp4::decode(code); break;
      default: c = type::fp8::decode(code); break;
    }
    return round_to_kind(mul_rn(c, dqs), sf_kind);
  }
  NETDSL_D float operator[](u32 i) const { return value(load(i)); }
};

template <class QT, class OutT, class ScaleSource>
struct DequantizeOp {
  using In = QT;
  using Out = OutT;
  struct Scale {
    float s;
  };
  using Raw = typename ScaleSource::Raw;
  static constexpr u32 kScaleAhead = kScaleAheadDequantize;
  ScaleSource scale_tensor;
  NETDSL_D Raw load(u32 i) const { return scale_tensor.load(i); }
  NETDSL_D Scale scale_of(const Raw& raw, bool) const { return {scale_tensor.value(raw)}; }
  NETDSL_D Scale scale(u32 i, bool r) const { return scale_of(load(i), r); }
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
