// Dequantize, y = round_to(Out, fl32(float32(q) * scale)): the product rounds to float32, then
// (float16/bfloat16 output) rounds again, as a float32 multiply followed by a cast does.
// Instantiated by name from netdsl/backends/cuda.py: dequantize_kernel<Q, Out, Mode>; the scale
// type (float32/float16/bfloat16/e8m0) is a run-time ScaleKind.
#include "common.cuh"

namespace netdsl {

template <class QT, class OutT>
struct DequantizeOp {
  using In = QT;
  using Out = OutT;
  struct Scale {
    float s;
  };
  ScaleTensor scale_tensor;
  NETDSL_D Scale scale(u32 i, bool) const { return {scale_tensor[i]}; }
  NETDSL_D float apply(float v, const Scale& s) const { return mul_rn(v, s.s); }
  NETDSL_D void apply16(const float (&v)[16], const Scale& s, float (&res)[16]) const {
#pragma unroll
    for (int j = 0; j < 16; ++j) res[j] = mul_rn(v[j], s.s);
  }
};

template <class Q, class Out, int kMode>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    dequantize_kernel(const u8* __restrict__ q, const u8* __restrict__ scale, u32 scale_kind,
                      const u32* __restrict__ map, u8* __restrict__ out, u32 n, u32 chunk_step) {
  const DequantizeOp<Q, Out> op{{scale, scale_kind}};
  elementwise<DequantizeOp<Q, Out>, kMode>(op, q, out, map, n, chunk_step);
}

}  // namespace netdsl
