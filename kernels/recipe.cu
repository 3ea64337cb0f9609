// The recipe layers (docs/semantics.md, "Recipe layers") for float32, float16 and bfloat16: every value
// widened exactly to float32, one IEEE float32 operation rounded to nearest even (subnormals kept: the
// loader compiles with --ftz=false --prec-div=true --fmad=false), rounded to the output type, NaN results
// canonical. netdsl/backends/cupy/recipe_layers.py launches them; instantiated by name from
// netdsl/backends/cupy/abi.py:
//   map_kernel<In, Out, Sign>   y = Out(sign(x)): unary abs / neg (In = Out) and cast (kSignKeep)
//   binary_kernel<T, Op>        y = a op b, TensorRT's broadcast through two strided maps
//   reduce_kernel<T, kMin>      the max or min over each output's reduced set, in parts when the set is
//                               large (a second launch reduces the parts); abs / neg of the input folded in
#include "common.cuh"

namespace netdsl {

enum SignMode : int { kSignKeep = 0, kSignAbs = 1, kSignNeg = 2 };
enum BinaryOp : int { kSum = 0, kSub = 1, kProd = 2, kDiv = 3, kMax = 4, kMin = 5 };

// IEEE 754-2019 maximum / minimum: a NaN operand gives NaN (max.NaN / min.NaN, sm_80+), and +0 > -0 --
// a zero result takes its sign from the operands (maximum: -0 only when both are; minimum: -0 when
// either is), whatever the hardware does with zeros of both signs.
NETDSL_D float ieee_maximum(float a, float b) {
  float r;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r == 0.0f ? float_of(bits_of(a) & bits_of(b) & 0x80000000u) : r;
}

NETDSL_D float ieee_minimum(float a, float b) {
  float r;
  asm("min.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r == 0.0f ? float_of((bits_of(a) | bits_of(b)) & 0x80000000u) : r;
}

// ---------------------------------------------------------------------------------------------------
// map_kernel: unary and cast, on the chunked elementwise driver of common.cuh (one per-tensor "scale"
// that is never used).

template <int kSign>
NETDSL_D float signed_value(float v) {
  if constexpr (kSign == kSignAbs) return fabsf(v);
  else if constexpr (kSign == kSignNeg) return -v;
  else return v;
}

template <class InT, class OutT, int kSign>
struct MapOp {
  using In = InT;
  using Out = OutT;
  struct Scale {};
  struct Raw {};  // no scale is ever loaded
  static constexpr u32 kScaleAhead = 0u;
  NETDSL_D Scale scale(u32, bool) const { return {}; }
  NETDSL_D float apply(float v, const Scale&) const { return signed_value<kSign>(v); }
  NETDSL_D bool apply16(const float (&v)[16], const Scale&, float (&res)[16]) const {
#pragma unroll
    for (int j = 0; j < 16; ++j) res[j] = signed_value<kSign>(v[j]);
    return !is_nan(max_abs_nan16(res));
  }
};

template <class In, class Out, int kSign>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    map_kernel(const u8* __restrict__ x, u8* __restrict__ out, u32 n) {
  elementwise<MapOp<In, Out, kSign>, kPerTensor>(MapOp<In, Out, kSign>{}, x, out, nullptr, n, 0u);
}

// ---------------------------------------------------------------------------------------------------
// binary_kernel: output element e reads a at scale_index(map[0], e) and b at scale_index(map[1], e),
// two ScaleMaps over the output's collapsed extents with block 1 and each input's strides (0 where it
// broadcasts); two elements per thread and step.

template <int kOp>
NETDSL_D float binary_value(float a, float b) {
  if constexpr (kOp == kSum) return __fadd_rn(a, b);
  else if constexpr (kOp == kSub) return __fsub_rn(a, b);
  else if constexpr (kOp == kProd) return __fmul_rn(a, b);
  else if constexpr (kOp == kDiv) return __fdiv_rn(a, b);
  else if constexpr (kOp == kMax) return ieee_maximum(a, b);
  else return ieee_minimum(a, b);
}

template <class T, int kOp>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    binary_kernel(const u8* __restrict__ a, const u8* __restrict__ b, const u32* __restrict__ map_words,
                  u8* __restrict__ out, u32 n) {
  __shared__ ScaleMap map[2];
  load_words(reinterpret_cast<u32*>(map), map_words, 2 * kScaleMapWords);
  const u32 pairs = (n + 1u) / 2u;
  for (u32 p = blockIdx.x * blockDim.x + threadIdx.x; p < pairs; p += gridDim.x * blockDim.x) {
    const u32 e = 2u * p;
    const bool second = e + 1u < n;
    const float r0 = binary_value<kOp>(load_element<T>(a, scale_index(map[0], e)),
                                       load_element<T>(b, scale_index(map[1], e)));
    const float r1 = second ? binary_value<kOp>(load_element<T>(a, scale_index(map[0], e + 1u)),
                                                load_element<T>(b, scale_index(map[1], e + 1u)))
                            : 0.0f;
    store_pair<T>(out, p, second, r0, r1);
  }
}

// ---------------------------------------------------------------------------------------------------
// reduce_kernel: `outputs` results, each over `units` units of its reduced set, in `splits` parts. A
// group of 2^group_log2 consecutive threads takes part s of output o (group g = s * outputs + o) and
// writes one value at out[o * splits + s]; its lanes step through units s * G + lane + k * splits * G.
// A unit is one element at scale_index(map[0], o) + scale_index(map[1], unit) (map[0]: the kept dims,
// map[1]: the reduced ones, strides in elements), or, when `chunked` (each output's set is the
// contiguous run of 16 * units elements at 16 * units * o), the 16-element chunk `o * units + unit`.
// Every value's storage bits are first made (bits & and_mask) ^ xor_mask: abs or neg of a unary layer
// folded in (16-bit types: the masks repeat in both halves of a word). Max and min pick an element
// (NaN canonical, zeros by sign), so the parts' order changes no bit and the parts, stored in T, are
// exact.

template <bool kMin>
NETDSL_D float reduce_combine(float a, float b) {
  return kMin ? ieee_minimum(a, b) : ieee_maximum(a, b);
}

template <class T, bool kMin>
NETDSL_D float reduce_chunk(const u8* __restrict__ x, u32 chunk, u32 and_mask, u32 xor_mask) {
  u32 w[Chunk<T>::kWords];
  load_chunk<T>(x, chunk, 16u, w);
#pragma unroll
  for (int i = 0; i < Chunk<T>::kWords; ++i) w[i] = (w[i] & and_mask) ^ xor_mask;
  float v[16];
  unpack16<T>(w, v);
#pragma unroll
  for (int width = 8; width >= 1; width /= 2) {
#pragma unroll
    for (int j = 0; j < width; ++j) v[j] = reduce_combine<kMin>(v[j], v[j + width]);
  }
  return v[0];
}

template <class T>
NETDSL_D float load_masked(const u8* __restrict__ x, u32 i, u32 and_mask, u32 xor_mask) {
  const u32 raw = T::bits == 32 ? __ldg(reinterpret_cast<const u32*>(x) + i) : __ldg(reinterpret_cast<const u16*>(x) + i);
  return T::decode((raw & and_mask) ^ xor_mask);
}

template <class T, bool kMin>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    reduce_kernel(const u8* __restrict__ x, const u32* __restrict__ map_words, u8* __restrict__ out,
                  u32 outputs, u32 units, u32 splits, u32 group_log2, u32 chunked, u32 and_mask, u32 xor_mask) {
  __shared__ ScaleMap map[2];
  __shared__ float warp_result[kThreads / 32];
  load_words(reinterpret_cast<u32*>(map), map_words, 2 * kScaleMapWords);
  const float identity = float_of(kMin ? 0x7F800000u : 0xFF800000u);  // +Inf for min, -Inf for max
  const u32 group = 1u << group_log2, lane = threadIdx.x & (group - 1u);
  const u32 groups_per_cta = kThreads >> group_log2, total = outputs * splits, step = splits * group;
  // Every thread of a CTA runs the same number of rounds (an idle group reduces nothing), so that the
  // shuffles and barriers below see all their threads.
  for (u32 base = blockIdx.x * groups_per_cta; base < total; base += gridDim.x * groups_per_cta) {
    const u32 g = base + (threadIdx.x >> group_log2);
    const bool active = g < total;
    const u32 o = g % outputs, s = g / outputs;
    float acc = identity;
    if (active) {
      u32 u = s * group + lane;
      if (chunked) {
        const u32 first = o * units;
        for (; u + step < units; u += 2u * step) {  // two chunks in flight
          const float m0 = reduce_chunk<T, kMin>(x, first + u, and_mask, xor_mask);
          const float m1 = reduce_chunk<T, kMin>(x, first + u + step, and_mask, xor_mask);
          acc = reduce_combine<kMin>(acc, reduce_combine<kMin>(m0, m1));
        }
        if (u < units) acc = reduce_combine<kMin>(acc, reduce_chunk<T, kMin>(x, first + u, and_mask, xor_mask));
      } else {
        const u32 kept = scale_index(map[0], o);
        for (; u < units; u += step) {
          acc = reduce_combine<kMin>(acc, load_masked<T>(x, kept + scale_index(map[1], u), and_mask, xor_mask));
        }
      }
    }
    for (u32 offset = min(group, 32u) / 2u; offset > 0u; offset /= 2u) {
      acc = reduce_combine<kMin>(acc, __shfl_xor_sync(0xFFFFFFFFu, acc, offset));
    }
    if (group > 32u) {  // the group's warps, through shared memory
      if ((threadIdx.x & 31u) == 0u) warp_result[threadIdx.x / 32u] = acc;
      __syncthreads();
      if (lane == 0u) {
        for (u32 w = 1; w < group / 32u; ++w) acc = reduce_combine<kMin>(acc, warp_result[threadIdx.x / 32u + w]);
      }
      __syncthreads();
    }
    if (active && lane == 0u) {
      const u32 i = o * splits + s;
      if constexpr (T::bits == 32) reinterpret_cast<u32*>(out)[i] = T::encode(acc);
      else reinterpret_cast<u16*>(out)[i] = u16(T::encode(acc));
    }
  }
}

}  // namespace netdsl
