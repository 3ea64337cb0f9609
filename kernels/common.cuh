// Shared machinery of the netdsl kernels: the block-scale index map, chunked vector I/O, the exact
// quotient x / scale, and the elementwise driver that Quantize, Dequantize and the fused
// Quantize->Dequantize run on.
//
// Indices: every tensor holds fewer than 2^31 elements, so element and chunk indices are 32-bit
// (grid-stride steps stay below 2^32); byte offsets are formed in 64 bits.
#pragma once
#include "formats.cuh"

namespace netdsl {

constexpr int kThreads = 256;  // threads per CTA for every kernel
// At least this many resident CTAs per SM (4: 1024 threads, registers capped at 64 per thread),
// enough warps to keep loads in flight. A tuning knob: benchmarks/bench_gpu.py --defines.
#ifndef NETDSL_MIN_CTAS_PER_SM
#define NETDSL_MIN_CTAS_PER_SM 4
#endif
constexpr int kMinCtasPerSm = NETDSL_MIN_CTAS_PER_SM;

// Tuning knobs of the elementwise loop (benchmarks/sweep_dq.py measures them): chunks each thread has
// loaded ahead of the one it works on; the ops whose next chunk's block scale is loaded with its data
// rather than when the chunk is worked on (bits: 1 Quantize, 2 Dequantize, 4 fused Quantize->Dequantize);
// streaming stores (st.global.cs) for the output (1) or plain ones (0). The H100 sweeps
// (benchmarks/results-sweep-dq.md, results-kgap.md) measured SCALE_AHEAD=1 (Quantize fp4 from bfloat16
// per-channel and 1x16: 93 / 94% -> 98 / 99% of the traffic-matched ceiling) and STORE_CS=1 (Dequantize
// +0.9%, fused Q->DQ +2%, medians) faster: the defaults.
#ifndef NETDSL_AHEAD
#define NETDSL_AHEAD 1
#endif
#ifndef NETDSL_SCALE_AHEAD
#define NETDSL_SCALE_AHEAD 1
#endif
#ifndef NETDSL_STORE_CS
#define NETDSL_STORE_CS 1
#endif
constexpr u32 kScaleAheadQuantize = 1, kScaleAheadDequantize = 2, kScaleAheadQuantizeDequantize = 4;
// How the kChunk loop finds a chunk's scale index (a tuning knob, benchmarks/device/kgap.sh): 0
// scale_index, which reads the map from shared memory and loops over its dims for every chunk; 1
// ChunkMap below where the collapsed map has at most two dims: their divisors held in registers; 2
// ChunkMap where the map has two dims and the grid stride is a whole number of rows (a thread keeps
// its columns): the thread's row advanced by a constant, its column's term computed once. The H100
// (benchmarks/results-kgap.md), Quantize fp4 128x128 from bfloat16 with SCALE_AHEAD=1: 0 91%, 1 96%,
// 2 97% of the traffic-matched ceiling; 2 is the default. float32 input always takes scale_index: with
// either map its Quantize kernel spills (60-88 bytes) at the 64-register cap, and it is at 98% without.
#ifndef NETDSL_CHUNK_MAP
#define NETDSL_CHUNK_MAP 2
#endif

// n / d for n < 2^31, d >= 1 (round-up multiplier, as in Granlund & Montgomery and CUTLASS's
// FastDivmod); the host computes mul and shr (netdsl/backends/cupy/geometry.py, fast_div).
struct FastDiv {
  u32 d, mul, shr;
  NETDSL_D u32 div(u32 n) const { return d == 1u ? n : __umulhi(n, mul) >> shr; }
};

// Block scales, pre-normalised: the host collapses x's dimensions (merging neighbours that index
// the scale alike) into at most kMaxDims dims, innermost last. Element e's scale index is
// sum_d ((coordinate_d / block_d) * scale_stride_d).
constexpr int kMaxDims = 8;
struct MapDim {
  FastDiv extent, block;
  u32 scale_stride;
};
struct ScaleMap {
  u32 rank;
  MapDim dim[kMaxDims];
};
constexpr int kScaleMapWords = int(sizeof(ScaleMap) / 4);

NETDSL_D u32 scale_index(const ScaleMap& m, u32 e) {
  u32 s = 0;
  for (int d = int(m.rank) - 1; d > 0; --d) {
    u32 q = m.dim[d].extent.div(e);
    s += m.dim[d].block.div(e - q * m.dim[d].extent.d) * m.dim[d].scale_stride;
    e = q;
  }
  return s + m.dim[0].block.div(e) * m.dim[0].scale_stride;
}

// scale_index of chunk k = c + steps * stride (c a thread's current chunk), NETDSL_CHUNK_MAP's way. For
// rank <= 2, scale_index(m, e) = inner.div(e % extent) * inner_stride + outer.div(e / extent) *
// outer_stride (the outer dim's extent unused; rank 1: outer 1, stride 0, and e / extent = 0). Where
// the stride spans whole rows (2), e / extent of chunk k is the row of c plus steps * row_step and
// e % extent that of c. Other maps take scale_index.
struct ChunkMap {
  FastDiv extent, inner, outer;
  u32 inner_stride, outer_stride;
  u32 row, row_step, column_term;  // (2) chunk c's e / extent, rows per stride, c's inner term
  bool fast;
  NETDSL_D void init(const ScaleMap& m, u32 c, u32 stride) {
    const u32 rank = m.rank;
    const MapDim& in = m.dim[rank - 1u];
    extent = in.extent;
    inner = in.block;
    inner_stride = in.scale_stride;
    outer = rank == 2u ? m.dim[0].block : FastDiv{1u, 0u, 0u};
    outer_stride = rank == 2u ? m.dim[0].scale_stride : 0u;
    if constexpr (NETDSL_CHUNK_MAP == 2) {
      const u32 span = stride * 16u;  // elements per grid step (below 2^32: stride <= chunks)
      fast = rank == 2u && span % extent.d == 0u;
      row = extent.div(c * 16u);
      row_step = span / extent.d;
      column_term = inner.div(c * 16u - row * extent.d) * inner_stride;
    } else {
      fast = rank <= 2u;
    }
  }
  NETDSL_D u32 index(const ScaleMap& m, u32 k, u32 steps) const {
    if (!fast) return scale_index(m, k * 16u);
    if constexpr (NETDSL_CHUNK_MAP == 2) {
      return outer.div(row + steps * row_step) * outer_stride + column_term;
    } else {
      const u32 e = k * 16u, q = extent.div(e);
      return inner.div(e - q * extent.d) * inner_stride + outer.div(q) * outer_stride;
    }
  }
  NETDSL_D void advance() { row += row_step; }
};

// Every CTA copies the map (a small device array) into shared memory once.
NETDSL_D void load_words(u32* dst, const u32* __restrict__ src, int words) {
  for (int i = threadIdx.x; i < words; i += blockDim.x) dst[i] = src[i];
  __syncthreads();
}

// Chunk c covers elements [16c, 16c + count); full chunks move with 16- or 8-byte accesses, the
// tail chunk byte by byte (zero-filled; 4-bit output pads its last nibble with 0).
template <class T>
NETDSL_D void load_chunk(const u8* __restrict__ base, u32 chunk, u32 count, u32 (&w)[Chunk<T>::kWords]) {
  const u8* p = base + u64(chunk) * Chunk<T>::kBytes;
  if (count == 16u) {
    if constexpr (Chunk<T>::kBytes >= 16) {
#pragma unroll
      for (int i = 0; i < Chunk<T>::kBytes / 16; ++i) {
        uint4 q = __ldg(reinterpret_cast<const uint4*>(p) + i);
        w[4 * i] = q.x;
        w[4 * i + 1] = q.y;
        w[4 * i + 2] = q.z;
        w[4 * i + 3] = q.w;
      }
    } else {
      uint2 q = __ldg(reinterpret_cast<const uint2*>(p));
      w[0] = q.x;
      w[1] = q.y;
    }
  } else {
#pragma unroll
    for (int i = 0; i < Chunk<T>::kWords; ++i) w[i] = 0u;
    const u32 bytes = (count * T::bits + 7u) / 8u;
#pragma unroll
    for (int b = 0; b < Chunk<T>::kBytes; ++b) {  // constant indices keep w in registers
      if (u32(b) < bytes) w[b / 4] |= u32(__ldg(p + b)) << (8 * (b % 4));
    }
  }
}

// A 16- or 8-byte store of output (NETDSL_STORE_CS: evict-first, st.global.cs).
NETDSL_D void store_output(u8* __restrict__ p, uint4 v) {
  if constexpr (NETDSL_STORE_CS) {
    asm volatile("st.global.cs.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
  } else {
    *reinterpret_cast<uint4*>(p) = v;
  }
}
NETDSL_D void store_output(u8* __restrict__ p, uint2 v) {
  if constexpr (NETDSL_STORE_CS) {
    asm volatile("st.global.cs.v2.u32 [%0], {%1, %2};" ::"l"(p), "r"(v.x), "r"(v.y) : "memory");
  } else {
    *reinterpret_cast<uint2*>(p) = v;
  }
}

template <class T>
NETDSL_D void store_chunk(u8* __restrict__ base, u32 chunk, u32 count, const u32 (&w)[Chunk<T>::kWords]) {
  u8* p = base + u64(chunk) * Chunk<T>::kBytes;
  if (count == 16u) {
    if constexpr (Chunk<T>::kBytes >= 16) {
#pragma unroll
      for (int i = 0; i < Chunk<T>::kBytes / 16; ++i) {
        store_output(p + 16 * i, make_uint4(w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]));
      }
    } else {
      store_output(p, make_uint2(w[0], w[1]));
    }
  } else {
    const u32 bytes = (count * T::bits + 7u) / 8u;
#pragma unroll
    for (int b = 0; b < Chunk<T>::kBytes; ++b) {
      if (u32(b) < bytes) p[b] = u8(w[b / 4] >> (8 * (b % 4)));
    }
  }
}

// Element i of an 8/16/32-bit tensor (a scale, or a float input read one by one), widened exactly.
template <class T>
NETDSL_D float load_element(const u8* __restrict__ p, u32 i) {
  if constexpr (T::bits == 32) return T::decode(__ldg(reinterpret_cast<const u32*>(p) + i));
  else if constexpr (T::bits == 16) return T::decode(__ldg(reinterpret_cast<const u16*>(p) + i));
  else return T::decode(__ldg(p + i));
}

// x / s, one IEEE float32 division, kept out of line: it only runs where the quotient can't come
// from a multiply (below) or where each element has its own scale.
__device__ __noinline__ float divide_rn(float x, float s) { return x / s; }

// The reciprocal that quotient16 works with: RN(1/s) for s in [2^-64, 2^64], else NaN, which sends
// every element of the chunk to the division.
NETDSL_D float safe_reciprocal(float s) {
  return (s >= 0x1p-64f && s <= 0x1p64f) ? 1.0f / s : float_of(kFloat32NaN);
}

// q[j] = fl(x[j] / s), the IEEE quotient bit for bit, for a chunk sharing one scale, without a
// division per element: with r = RN(1/s), p = RN(x r) is within an ulp of x / s, the residual
// s p - x is exact in one FMA, and RN(p - r (s p - x)) is the correctly rounded quotient
// (Markstein, IBM J. Res. Dev. 34(1), 1990). Three FMA-pipe instructions, no branch per element.
// The guard keeps every step clear of overflow and of the underflow that would make the residual
// inexact: s in [2^-64, 2^64] and amax * r <= 2^100, where amax bounds max |x[j]| (NaN elements
// excepted, which come out NaN either way); Inf elements, huge quotients and extreme scales take the
// division. Where a quotient is tiny (under 2^-12, which every type encodes as a signed zero) the
// result may differ from the division in its last bits but not in sign or in code. Checked on the
// host: all 2^23 significands of s against x at and around every rounding boundary of int8, int4,
// fp8 and fp4, and 4e8 random (s, x) over the guarded range, subnormal x and signed zeros included.
// Returns true when it took the multiply path: then every q[j] is finite (|q| <= 2^100) and, where
// amax is NaN-propagating (max_abs_nan16), no x[j] was NaN.
// One element of it: RN(x / s) from r = RN(1/s), under quotient16's guard.
NETDSL_D float quotient_fma(float x, float s, float r) {
  const float p = mul_rn(x, r);
  return __fmaf_rn(-r, __fmaf_rn(s, p, -x), p);  // signs arranged so that x = -0 gives -0
}

NETDSL_D bool quotient16(const float (&x)[16], float s, float r, float amax, float (&q)[16]) {
  if (mul_rn(amax, r) <= 0x1p100f) {  // false when r or the product is NaN or Inf
#pragma unroll
    for (int j = 0; j < 16; ++j) q[j] = quotient_fma(x[j], s, r);
    return true;
  }
#pragma unroll
  for (int j = 0; j < 16; ++j) q[j] = divide_rn(x[j], s);
  return false;
}

NETDSL_D float max_magnitude16(const float (&x)[16]) {
  float m = 0.0f;
#pragma unroll
  for (int j = 0; j < 16; ++j) m = fmaxf(m, fabsf(x[j]));  // NaN ignored
  return m;
}

// max |x[j]|, NaN when any x[j] is NaN (the same one instruction per element as max_magnitude16).
NETDSL_D float max_abs_nan16(const float (&x)[16]) {
  float m = 0.0f;
#pragma unroll
  for (int j = 0; j < 16; ++j) m = max_abs_nan(m, x[j]);
  return m;
}

NETDSL_D bool is_finite(float v) { return fabsf(v) <= 0x1.fffffep127f; }  // false for NaN

// Quantize's value before encoding: x / s; a zero scale (only ever a DynamicQuantize effective
// scale: Quantize's constant scales are positive) gives +0 data, as TensorRT-LLM does.
NETDSL_D float quantize_value(float x, float s) { return s == 0.0f ? 0.0f : divide_rn(x, s); }

// Returns quotient16's flag (true, too, for a zero scale: the data is all +0).
NETDSL_D bool quantize16(const float (&x)[16], float s, float r, float amax, float (&q)[16]) {
  if (s == 0.0f) {
#pragma unroll
    for (int j = 0; j < 16; ++j) q[j] = 0.0f;
    return true;
  }
  return quotient16(x, s, r, amax, q);
}

// A scale tensor whose element type is chosen at run time (one uniform branch per load), which
// keeps the number of kernel instantiations down. Kinds: ScaleKind, mirrored in netdsl/backends/cupy/abi.py.
enum ScaleKind : u32 { kScaleFloat32 = 0, kScaleFloat16 = 1, kScaleBFloat16 = 2, kScaleE8M0 = 3 };

// load(i) issues the load of scale i and returns its stored bits, value(bits) widens them: split so that
// the elementwise loop can load the next chunk's scale before it works on this chunk and widen it only
// when it needs it.
struct ScaleTensor {
  const u8* __restrict__ data;
  u32 kind;
  using Raw = u32;
  NETDSL_D u32 load(u32 i) const {
    switch (kind) {
      case kScaleFloat16:
      case kScaleBFloat16: return __ldg(reinterpret_cast<const u16*>(data) + i);
      case kScaleE8M0: return __ldg(data + i);
      default: return __ldg(reinterpret_cast<const u32*>(data) + i);
    }
  }
  NETDSL_D float value(u32 bits) const {
    switch (kind) {
      case kScaleFloat16: return type::float16::decode(bits);
      case kScaleBFloat16: return type::bfloat16::decode(bits);
      case kScaleE8M0: return type::e8m0::decode(bits);
      default: return type::float32::decode(bits);
    }
  }
  NETDSL_D float operator[](u32 i) const { return value(load(i)); }
};

// One element of any storage type (4-bit: nibble e % 2 of byte e / 2).
template <class T>
NETDSL_D float load_one(const u8* __restrict__ p, u32 e) {
  if constexpr (T::bits == 4) return T::decode((__ldg(p + e / 2u) >> (4u * (e % 2u))) & 0xFu);
  else return load_element<T>(p, e);
}

// Elements 2p and 2p + 1 (when second); for 4-bit types exactly byte p, a missing second element
// encoded as +0 (code 0: the padding nibble).
template <class T>
NETDSL_D void store_pair(u8* __restrict__ p, u32 pair, bool second, float v0, float v1) {
  if constexpr (T::bits == 32) {
    u32* w = reinterpret_cast<u32*>(p) + 2u * pair;
    w[0] = T::encode(v0);
    if (second) w[1] = T::encode(v1);
  } else {
    const u32 w = encode2<T>(v0, second ? v1 : 0.0f);
    if constexpr (T::bits == 16) {
      u16* h = reinterpret_cast<u16*>(p) + 2u * pair;
      if (second) *reinterpret_cast<u32*>(h) = w;
      else h[0] = u16(w);
    } else if constexpr (T::bits == 8) {
      if (second) reinterpret_cast<u16*>(p)[pair] = u16(w);
      else p[2u * pair] = u8(w);
    } else {
      p[pair] = u8(w);
    }
  }
}

// The general path: a scale index per element, two elements (one 4-bit byte) per thread and step;
// compact code (no 16-way unrolling) since every element pays for its index anyway.
template <class Op>
NETDSL_D void elementwise_pairs(const Op& op, const u8* __restrict__ x, u8* __restrict__ out,
                                const ScaleMap& map, u32 n) {
  using In = typename Op::In;
  using Out = typename Op::Out;
  const u32 pairs = (n + 1u) / 2u;
  for (u32 p = blockIdx.x * blockDim.x + threadIdx.x; p < pairs; p += gridDim.x * blockDim.x) {
    const u32 e = 2u * p;
    const bool second = e + 1u < n;
    const float r0 = op.apply(load_one<In>(x, e), op.scale(scale_index(map, e), false));
    const float r1 = second ? op.apply(load_one<In>(x, e + 1u), op.scale(scale_index(map, e + 1u), false)) : 0.0f;
    store_pair<Out>(out, p, second, r0, r1);
  }
}

enum MapMode : int {
  kPerTensor = 0,  // one scale
  kChunk = 1,      // a chunk's 16 elements share one scale (step 0) or use 16 consecutive ones (step 1)
  kGeneral = 2,    // scale index per element (elementwise_pairs)
};

// Stores chunk c as store_chunk does, but when the whole warp holds 32 full consecutive chunks and a
// chunk is wider than 16 bytes (float32 and 16-bit outputs), it goes through shared memory so that
// every store instruction writes one contiguous 512-byte span: a lane's 32 or 64 bytes stored
// directly would half-fill every sector a store instruction touches, and stores, unlike loads, get
// no help from L1 (measured on the H100: float32 output at half the copy rate). Pieces are swizzled
// within a lane's row so that neither side has shared-memory bank conflicts.
template <class T>
NETDSL_D void store_chunk_coalesced(u8* __restrict__ base, u32 chunk, u32 count, const u32 (&w)[Chunk<T>::kWords],
                                    u32 full_chunks) {
  constexpr int kPieces = Chunk<T>::kBytes / 16;
  const u32 lane = threadIdx.x & 31u;
  if constexpr (kPieces > 1) {
    __shared__ uint4 stage[kThreads / 32][32 * kPieces];
    if (chunk - lane + 32u <= full_chunks) {  // the same for every lane of the warp
      constexpr u32 kRowsPerRotation = 8u / kPieces;
      uint4* s = stage[threadIdx.x / 32u];
#pragma unroll
      for (int i = 0; i < kPieces; ++i) {
        s[lane * kPieces + (i + lane / kRowsPerRotation) % kPieces] =
            make_uint4(w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]);
      }
      __syncwarp();
      u8* g = base + u64(chunk - lane) * Chunk<T>::kBytes;
#pragma unroll
      for (int j = 0; j < kPieces; ++j) {
        const u32 q = j * 32u + lane, row = q / kPieces;
        store_output(g + 16u * q, s[row * kPieces + (q % kPieces + row / kRowsPerRotation) % kPieces]);
      }
      __syncwarp();
      return;
    }
  }
  store_chunk<T>(base, chunk, count, w);
}

// Runs op over the n elements of x, chunk by chunk, writing n elements of Op::Out. Op provides
//   In, Out                  element types
//   Raw load(i)              the stored bits of the scale(s) of scale index i (loads only)
//   Scale scale_of(raw, r)   those scale(s) widened (with a reciprocal for the quotient when r)
//   Scale scale(i, r)        scale_of(load(i), r)
//   float apply(v, s)        the result value for element value v, before encoding to Out
//   bool apply16(v, s, res)  the same for a chunk sharing one scale (made with r = true); true when
//                            no res[j] is NaN, which lets the chunk take the NaN-free encoders
//   kScaleAhead              its bit of NETDSL_SCALE_AHEAD (0: never)
// Each thread loads its next kAhead chunks (and, with one scale per chunk, their scales) before it
// works on the current one, so that loads are always in flight behind the arithmetic.
template <class Op, int kMode>
NETDSL_D void elementwise(const Op& op, const u8* __restrict__ x, u8* __restrict__ out,
                          const u32* __restrict__ map_words, u32 n, u32 chunk_step) {
  using In = typename Op::In;
  using Out = typename Op::Out;
  using Raw = typename Op::Raw;
  constexpr int kAhead = NETDSL_AHEAD;
  constexpr bool kScaleAhead = kMode == kChunk && (NETDSL_SCALE_AHEAD & Op::kScaleAhead) != 0u;
  constexpr bool kChunkMap = kMode == kChunk && NETDSL_CHUNK_MAP != 0 && In::bits < 32;  // float32 spills
  __shared__ ScaleMap map;
  typename Op::Scale uniform{};
  if constexpr (kMode == kPerTensor) {
    uniform = op.scale(0u, true);
  } else {
    load_words(reinterpret_cast<u32*>(&map), map_words, kScaleMapWords);
  }
  if constexpr (kMode == kGeneral) {
    elementwise_pairs(op, x, out, map, n);
  } else {
    const u32 chunks = (n + 15u) / 16u, full_chunks = n / 16u, stride = gridDim.x * blockDim.x;
    u32 c = blockIdx.x * blockDim.x + threadIdx.x;
    u32 win[kAhead][Chunk<In>::kWords];
    Raw raw[kAhead] = {};
    // The scale index of chunk k = c + steps * stride.
    ChunkMap chunk_map;
    if constexpr (kChunkMap) chunk_map.init(map, c, stride);
    auto chunk_scale = [&](u32 k, u32 steps) -> u32 {
      if constexpr (kChunkMap) return chunk_map.index(map, k, steps);
      else return scale_index(map, k * 16u);
    };
    // chunk k = c + steps * stride's data (and scale) into a slot, when k is a chunk
    auto fetch = [&](u32 k, u32 steps, u32 (&w)[Chunk<In>::kWords], Raw& r) {
      if (k < chunks) {
        load_chunk<In>(x, k, min(16u, n - k * 16u), w);
        if constexpr (kScaleAhead) {
          if (chunk_step == 0u) r = op.load(chunk_scale(k, steps));
        }
      }
    };
#pragma unroll
    for (int a = 0; a < kAhead; ++a) fetch(c + u32(a) * stride, u32(a), win[a], raw[a]);
    while (c < chunks) {
      const u32 count = min(16u, n - c * 16u);
      u32 cur[Chunk<In>::kWords];
#pragma unroll
      for (int i = 0; i < Chunk<In>::kWords; ++i) cur[i] = win[0][i];
      const Raw cur_raw = raw[0];
#pragma unroll
      for (int a = 0; a + 1 < kAhead; ++a) {
#pragma unroll
        for (int i = 0; i < Chunk<In>::kWords; ++i) win[a][i] = win[a + 1][i];
        raw[a] = raw[a + 1];
      }
      fetch(c + u32(kAhead) * stride, u32(kAhead), win[kAhead - 1], raw[kAhead - 1]);
      float v[16], res[16];
      unpack16<In>(cur, v);
      bool nan_free = false;
      if constexpr (kMode == kPerTensor) {
        nan_free = op.apply16(v, uniform, res);
      } else {
        // kChunk: n is a multiple of 16 here, so every chunk is full.
        if (chunk_step == 0u) {
          if constexpr (kScaleAhead) {
            nan_free = op.apply16(v, op.scale_of(cur_raw, true), res);
          } else {
            nan_free = op.apply16(v, op.scale(chunk_scale(c, 0u), true), res);
          }
        } else {
          const u32 i0 = chunk_scale(c, 0u);
#pragma unroll
          for (int j = 0; j < 16; ++j) res[j] = op.apply(v[j], op.scale(i0 + j, false));
        }
      }
      if (count < 16u) {
#pragma unroll
        for (int j = 0; j < 16; ++j) res[j] = u32(j) < count ? res[j] : 0.0f;
      }
      u32 wout[Chunk<Out>::kWords];
      if (nan_free) {
        pack16_nonan<Out>(res, wout);
      } else {
        pack16<Out>(res, wout);
      }
      store_chunk_coalesced<Out>(out, c, count, wout, full_chunks);
      c += stride;
      if constexpr (kChunkMap && NETDSL_CHUNK_MAP == 2) chunk_map.advance();
    }
  }
}

}  // namespace netdsl
