// DynamicQuantize: block scales from the data itself (SEMANTICS.md, "DynamicQuantize").
//
// Fast path (dynamic_quantize_rows_kernel): blocks of 16 * 2^k consecutive elements of the
// flattened tensor (NVFP4 16 and MXFP8 32 along the last axis, or any blocks the host collapses
// to that form): each lane owns one 16-element chunk, 2^k adjacent lanes one block, amax by warp
// shuffles; one pass.
// General path (any N-D block shape, partial edge blocks): block_amax_kernel (one thread per
// block: small blocks) or atomic_amax_kernel (a grid-stride pass with atomicMax on the float bits,
// for large blocks), then block_scales_kernel, then quantize_kernel (quantize.cu) with the
// effective float32 scales.
#include "common.cuh"

namespace netdsl {

struct BlockScale {
  u32 stored;  // the scale output's storage bits
  float eff;   // the effective scale the data is divided by
};

// amax = max |x| over the block, NaN ignored (maxNum); the rules per mode:
struct NVFP4 {
  using Data = type::fp4;
  using Scale = type::fp8;
  // s = fp8(amax / 6 / dqs), two float32 divisions left to right; data = fp4(x / fl32(s * dqs)).
  NETDSL_D static BlockScale make(float amax, float dqs) {
    const u32 code = type::fp8::encode(amax / 6.0f / dqs);
    return {code, mul_rn(type::fp8::decode(code), dqs)};
  }
};

struct MXFP8 {
  using Data = type::fp8;
  using Scale = type::e8m0;
  // 2^e with e the smallest integer such that fl32(amax / 448) <= 2^e, clamped to [-127, 127].
  NETDSL_D static BlockScale make(float amax, float) {
    const u32 code = type::e8m0::round_up(amax / 448.0f);
    return {code, type::e8m0::decode(code)};
  }
};

template <class DataT, int kMax>
struct FloatScale {
  using Data = DataT;
  using Scale = type::float32;
  NETDSL_D static BlockScale make(float amax, float) {
    const float s = amax / float(kMax);
    return {bits_of(s), s};
  }
};
using FloatFP8 = FloatScale<type::fp8, 448>;
using FloatInt8 = FloatScale<type::int8, 127>;

template <class T>
NETDSL_D void store_scale(u8* __restrict__ p, u32 i, u32 stored) {
  if constexpr (T::bits == 32) reinterpret_cast<u32*>(p)[i] = stored;
  else p[i] = u8(stored);
}

template <class In, class Mode>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    dynamic_quantize_rows_kernel(const u8* __restrict__ x, u8* __restrict__ data, u8* __restrict__ scale,
                                 u32 n, u32 lanes_shift, float dqs) {
  using Data = typename Mode::Data;
  const u32 chunks = n / 16u;  // n is a multiple of the block, the block a multiple of 16
  const u32 lane = threadIdx.x & 31u;
  const u32 lanes_mask = (1u << lanes_shift) - 1u;
  const u32 stride = gridDim.x * blockDim.x;
  // The loop runs warp-uniformly (base is the warp's first chunk) so that every shuffle sees all
  // lanes; a block's lanes are all active or all idle. The next chunk is loaded before the current
  // one is worked on.
  u32 base = (blockIdx.x * blockDim.x + threadIdx.x) & ~31u;
  u32 win[Chunk<In>::kWords] = {};
  if (base + lane < chunks) load_chunk<In>(x, base + lane, 16u, win);
  while (base < chunks) {
    const u32 c = base + lane, next = base + stride;
    const bool active = c < chunks;
    u32 ahead[Chunk<In>::kWords] = {};
    if (next + lane < chunks) load_chunk<In>(x, next + lane, 16u, ahead);
    float v[16];
    unpack16<In>(win, v);
    float amax = 0.0f;
#pragma unroll
    for (int j = 0; j < 16; ++j) amax = fmaxf(amax, fabsf(v[j]));
    for (u32 offset = 1u; offset <= lanes_mask; offset <<= 1) {
      amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, offset));
    }
    if (active) {
      const BlockScale bs = Mode::make(amax, dqs);
      if ((lane & lanes_mask) == 0u) store_scale<typename Mode::Scale>(scale, c >> lanes_shift, bs.stored);
      float res[16];
      quantize16(v, bs.eff, safe_reciprocal(bs.eff), amax, res);
      u32 wout[Chunk<Data>::kWords];
      pack16<Data>(res, wout);
      store_chunk<Data>(data, c, 16u, wout);
    }
#pragma unroll
    for (int i = 0; i < Chunk<In>::kWords; ++i) win[i] = ahead[i];
    base = next;
  }
}

// Collapsed block geometry for the one-thread-per-block pass, at most 4 dims (DynamicQuantize
// takes rank 2..4), padded in front with extent-1 dims.
struct BlockGeometry {
  u32 extent[4], block[4];
  FastDiv blocks[4];  // scale extents, ceil(extent / block)
};
constexpr int kBlockGeometryWords = int(sizeof(BlockGeometry) / 4);

template <class In>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    block_amax_kernel(const u8* __restrict__ x, const u32* __restrict__ geometry_words,
                      float* __restrict__ amax, u32 nblocks) {
  __shared__ BlockGeometry g;
  load_words(reinterpret_cast<u32*>(&g), geometry_words, kBlockGeometryWords);
  for (u32 t = blockIdx.x * blockDim.x + threadIdx.x; t < nblocks; t += gridDim.x * blockDim.x) {
    u32 start[4], stop[4], rest = t;
#pragma unroll
    for (int d = 3; d >= 0; --d) {
      const u32 q = g.blocks[d].div(rest);
      start[d] = (rest - q * g.blocks[d].d) * g.block[d];
      stop[d] = min(start[d] + g.block[d], g.extent[d]);
      rest = q;
    }
    float m = 0.0f;
    for (u32 i0 = start[0]; i0 < stop[0]; ++i0)
      for (u32 i1 = start[1]; i1 < stop[1]; ++i1)
#pragma unroll 4
        for (u32 i2 = start[2]; i2 < stop[2]; ++i2) {  // unrolled: several loads in flight per thread
          const u32 row = ((i0 * g.extent[1] + i1) * g.extent[2] + i2) * g.extent[3];
#pragma unroll 4
          for (u32 i3 = start[3]; i3 < stop[3]; ++i3) m = fmaxf(m, fabsf(load_element<In>(x, row + i3)));
        }
    amax[t] = m;
  }
}

// amax by atomicMax on the bits of |x| (non-negative floats order as unsigned integers; NaN never
// reaches the atomic since fmaxf drops it). amax_bits must start zeroed. Each thread keeps a
// running (block, max) and flushes when the block changes; per-tensor reduces over the warp first.
template <class In, int kMode>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    atomic_amax_kernel(const u8* __restrict__ x, const u32* __restrict__ map_words, u32* __restrict__ amax_bits,
                       u32 n) {
  __shared__ ScaleMap map;
  if constexpr (kMode != kPerTensor) load_words(reinterpret_cast<u32*>(&map), map_words, kScaleMapWords);
  u32 current = 0u;
  float m = 0.0f;
  const u32 chunks = (n + 15u) / 16u;
  for (u32 c = blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += gridDim.x * blockDim.x) {
    const u32 count = min(16u, n - c * 16u);
    u32 win[Chunk<In>::kWords];
    load_chunk<In>(x, c, count, win);
    float v[16];
    unpack16<In>(win, v);
    if constexpr (kMode == kGeneral) {
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        if (u32(j) >= count) break;
        const u32 b = scale_index(map, c * 16u + j);
        if (b != current) {
          if (m > 0.0f) atomicMax(amax_bits + current, bits_of(m));
          current = b;
          m = 0.0f;
        }
        m = fmaxf(m, fabsf(v[j]));
      }
    } else {
      float cm = 0.0f;
#pragma unroll
      for (int j = 0; j < 16; ++j) cm = fmaxf(cm, fabsf(v[j]));
      if constexpr (kMode == kChunk) {
        const u32 b = scale_index(map, c * 16u);
        if (b != current) {
          if (m > 0.0f) atomicMax(amax_bits + current, bits_of(m));
          current = b;
          m = 0.0f;
        }
      }
      m = fmaxf(m, cm);
    }
  }
  u32 mb = bits_of(m);
  if constexpr (kMode == kPerTensor) {
    mb = __reduce_max_sync(0xFFFFFFFFu, mb);
    if ((threadIdx.x & 31u) == 0u && mb != 0u) atomicMax(amax_bits, mb);
  } else {
    if (mb != 0u) atomicMax(amax_bits + current, mb);
  }
}

template <class Mode>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    block_scales_kernel(const float* __restrict__ amax, u8* __restrict__ scale, float* __restrict__ eff,
                        u32 nblocks, float dqs) {
  for (u32 b = blockIdx.x * blockDim.x + threadIdx.x; b < nblocks; b += gridDim.x * blockDim.x) {
    const BlockScale bs = Mode::make(amax[b], dqs);
    store_scale<typename Mode::Scale>(scale, b, bs.stored);
    eff[b] = bs.eff;
  }
}

}  // namespace netdsl
