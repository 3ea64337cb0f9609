// DynamicQuantize: block scales from the data itself (docs/semantics.md, "DynamicQuantize").
//
// Fast path (dynamic_quantize_rows_kernel): blocks of 16 * 2^k consecutive elements of the
// flattened tensor (NVFP4 16 and MXFP8 32 along the last axis, or any blocks the host collapses
// to that form): each lane owns one 16-element chunk, 2^k adjacent lanes one block, amax by warp
// shuffles; one pass.
// Block path (dynamic_quantize_cta_kernel): 2-D blocks of up to 16K elements, one CTA per block, one
// pass.
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
  // make() without its divisions, given rdqs = RN(1/dqs): for amax in [2^-96, 2^96] and dqs in
  // [2^-32, 2^32], amax / 6 (at least 2^-99) is Markstein's quotient_fma, exact, and so is its quotient
  // by dqs wherever that is at least 2^-100 (normal, with an exact residual): everywhere the fp8 code
  // can depend on its bits (below 2^-10 every value is code 0). Elsewhere (amax 0, Inf, extreme
  // scales) the divisions. The quotient is never NaN here: no NaN fix-up in the conversion.
  NETDSL_D static BlockScale make(float amax, float dqs, float rdqs) {
    if (!(amax >= 0x1p-96f && amax <= 0x1p96f && dqs >= 0x1p-32f && dqs <= 0x1p32f)) return make(amax, dqs);
    constexpr float kRcp6 = 1.0f / 6.0f;  // RN(1/6)
    const u32 code = type::fp8::encode2_nonan(quotient_fma(quotient_fma(amax, 6.0f, kRcp6), dqs, rdqs), 0.0f) & 0xFFu;
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

// Mode::make, through NVFP4's division-free form where it has one (rdqs = RN(1/dqs)).
template <class Mode>
NETDSL_D BlockScale make_scale(float amax, float dqs, float rdqs) {
  if constexpr (same_type<Mode, NVFP4>) return NVFP4::make(amax, dqs, rdqs);
  else return Mode::make(amax, dqs);
}

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
    // The NaN-propagating max costs what fmaxf does and says whether the chunk holds a NaN; only
    // then is the (NaN-ignoring) amax computed again.
    float amax = max_abs_nan16(v);
    const bool lane_nan = is_nan(amax);
    if (lane_nan) amax = max_magnitude16(v);
    for (u32 offset = 1u; offset <= lanes_mask; offset <<= 1) {
      amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, offset));
    }
    if (active) {
      const BlockScale bs = Mode::make(amax, dqs);
      if ((lane & lanes_mask) == 0u) store_scale<typename Mode::Scale>(scale, c >> lanes_shift, bs.stored);
      float res[16];
      const bool nan_free = quantize16(v, bs.eff, safe_reciprocal(bs.eff), amax, res) && !lane_nan;
      u32 wout[Chunk<Data>::kWords];
      if (nan_free) {
        pack16_nonan<Data>(res, wout);
      } else {
        pack16<Data>(res, wout);
      }
      store_chunk<Data>(data, c, 16u, wout);
    }
#pragma unroll
    for (int i = 0; i < Chunk<In>::kWords; ++i) win[i] = ahead[i];
    base = next;
  }
}

// Blocks down the columns (the tile path): x viewed as rows x cols (the host collapses it so), blocks
// of block_rows (<= kRows) rows by block_cols columns, block_cols = 1 (kPerColumn: NVFP4 16x1, MXFP8
// 32x1) or kVec << lanes_shift (2-D float-scale blocks; cols a multiple of it). One thread owns a
// band of block_rows rows by kVec consecutive columns: it loads the whole band at once (kRows
// independent 4- to 16-byte loads, coalesced along the rows across the warp), keeps it in registers,
// takes the column (or, through warp shuffles, the block) amax, writes the scales and the data: one
// read of x. A last band of fewer rows (partial edge blocks) loads zeros past the end and stores
// only its rows.
// kWords words of x (4, 8 or 16 bytes) at p, or zeros (+0 leaves every amax as it is) when !in_range.
template <int kWords>
NETDSL_D void load_row(const u8* __restrict__ p, bool in_range, u32 (&w)[kWords]) {
  if (!in_range) {
#pragma unroll
    for (int i = 0; i < kWords; ++i) w[i] = 0u;
  } else if constexpr (kWords == 4) {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
    w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
  } else if constexpr (kWords == 2) {
    const uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
    w[0] = v.x, w[1] = v.y;
  } else {
    w[0] = __ldg(reinterpret_cast<const u32*>(p));
  }
}

// Tuning knobs (benchmarks/bench_gpu.py --defines; netdsl/backends/cupy/abi.py reads the same values):
// bfloat16 columns per thread in 16-row bands, and resident CTAs per SM.
#ifndef NETDSL_TILE16_BF16_VEC
#define NETDSL_TILE16_BF16_VEC 4
#endif
#ifndef NETDSL_TILE_PREFETCH
#define NETDSL_TILE_PREFETCH 1
#endif
#ifndef NETDSL_TILE_CTAS
#define NETDSL_TILE_CTAS 2
#endif
template <class In, int kRows>
struct TileShape {
  // Columns per thread: 16-row bands 4 (bfloat16 too: 8 bytes a row, so that two bands fit in the
  // registers and the next loads while this one is worked on; 8 columns without that reach 89%),
  // 32-row bands 2; at most 64 words of x per thread, held in registers.
  static constexpr int kVec = kRows == 16 ? (same_type<In, type::bfloat16> ? NETDSL_TILE16_BF16_VEC : 4) : 2;
  static constexpr int kWords = kVec * In::bits / 32;       // words of x per thread and row: 1, 2 or 4
  static constexpr bool kPrefetch =  // two bands in registers (float16 and 32-row bands would spill)
      NETDSL_TILE_PREFETCH && kRows == 16 && same_type<In, type::bfloat16>;
};

// kVec values of type T (encode_vec's bits) stored at p.
template <class T, int kVec>
NETDSL_D void store_vec(u8* __restrict__ p, u64 bits) {
  constexpr int kBits = kVec * T::bits;
  if constexpr (kBits == 64) *reinterpret_cast<uint2*>(p) = make_uint2(u32(bits), u32(bits >> 32));
  else if constexpr (kBits == 32) *reinterpret_cast<u32*>(p) = u32(bits);
  else if constexpr (kBits == 16) *reinterpret_cast<u16*>(p) = u16(bits);
  else *p = u8(bits);
}

template <class T, int kVec>
NETDSL_D void store_bits(u8* __restrict__ base, u64 element, u64 bits) {
  store_vec<T, kVec>(base + element * T::bits / 8u, bits);
}

// kVec values of one row encoded into kVec * bits bits (element k at bit k * bits).
template <class T, int kVec>
NETDSL_D u64 encode_vec(const float (&q)[kVec], bool nan_free) {
  u64 bits = 0;
  if constexpr (same_type<T, type::fp4> && kVec <= 8) {
    if (nan_free) {  // 32-bit shift-and-add, as pack16_nonan: two instructions a value where u64 takes five
      u32 word = 0u;
#pragma unroll
      for (int k = 0; k < kVec; ++k) word += type::fp4::encode_high_nonan(q[k]) >> (28 - 4 * k);
      return word;  // encode_high_nonan's bits below 28 are zero: no mask needed
    }
  }
  if constexpr (same_type<T, type::int8> && kVec % 4 == 0) {
    if (nan_free) {  // clamp, then + 1.5 * 2^23 rounds (ties to even) with the code in the low byte
#pragma unroll
      for (int k = 0; k < kVec; k += 4) {
        u32 c[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) c[i] = bits_of(__fadd_rn(fminf(fmaxf(q[k + i], -128.0f), 127.0f), 0x1.8p23f));
        const u32 word = __byte_perm(__byte_perm(c[0], c[1], 0x0040u), __byte_perm(c[2], c[3], 0x0040u), 0x5410u);
        bits |= u64(word) << (k * 8);
      }
      return bits;
    }
  }
  if constexpr (same_type<T, type::fp8>) {
    if (nan_free) {
#pragma unroll
      for (int k = 0; k < kVec; k += 2) bits |= u64(type::fp8::encode2_nonan(q[k], q[k + 1])) << (k * 8);
      return bits;
    }
  }
#pragma unroll
  for (int k = 0; k < kVec; k += 2) bits |= u64(encode2<T>(q[k], q[k + 1])) << (k * T::bits);
  return bits;
}

template <class In, class Mode, int kRows, bool kPerColumn>
__global__ void __launch_bounds__(kThreads, NETDSL_TILE_CTAS)
    dynamic_quantize_tile_kernel(const u8* __restrict__ x, u8* __restrict__ data, u8* __restrict__ scale,
                                 u32 rows, u32 cols, u32 block_rows, u32 lanes_shift, float dqs) {
  using Data = typename Mode::Data;
  using Shape = TileShape<In, kRows>;
  constexpr int kVec = Shape::kVec, kWords = Shape::kWords;
  const u32 groups = cols / kVec;                   // thread columns per row
  const u32 bands = (rows + block_rows - 1u) / block_rows;
  const u32 items = bands * groups;
  const u32 lane = threadIdx.x & 31u;
  const u32 lanes_mask = (1u << lanes_shift) - 1u;  // 0 when kPerColumn
  const u32 stride = gridDim.x * blockDim.x;
  const u64 row_bytes = u64(cols) * (In::bits / 8);
  const float rdqs = 1.0f / dqs;
  // Item t: its band and thread column (one division, shared by the load and the work).
  struct Item {
    u32 band, g, row0, nrows;
  };
  auto item_of = [&](u32 t) -> Item {
    const bool active = t < items;
    const u32 band = active ? t / groups : 0u, g = active ? t - band * groups : 0u;
    const u32 row0 = band * block_rows;
    return {band, g, row0, active ? min(block_rows, rows - row0) : 0u};
  };
  // An item's band into registers: rows row0.. of its columns; zeros past the last row.
  auto load_band = [&](const Item& it, u32 (&w)[kRows][kWords]) {
    const u8* p = x + (u64(it.row0) * cols + it.g * kVec) * (In::bits / 8);
#pragma unroll
    for (int r = 0; r < kRows; ++r, p += row_bytes) load_row(p, u32(r) < it.nrows, w[r]);  // one running address
  };
  // Warp-uniform loop (shuffles need every lane); a block's lanes are all active or all idle. Where
  // a band takes at most 32 registers, the next one is loaded before this one is worked on.
  u32 base = (blockIdx.x * blockDim.x + threadIdx.x) & ~31u;
  u32 w[kRows][kWords], ahead[kRows][kWords];
  Item next = item_of(base + lane);
  if constexpr (Shape::kPrefetch) load_band(next, ahead);
  for (; base < items; base += stride) {
    const Item it = next;
    const bool active = it.nrows != 0u;
    const u32 band = it.band, g = it.g, row0 = it.row0, col0 = g * kVec, nrows = it.nrows;
    if constexpr (Shape::kPrefetch) {
#pragma unroll
      for (int r = 0; r < kRows; ++r)
#pragma unroll
        for (int i = 0; i < kWords; ++i) w[r][i] = ahead[r][i];
      next = item_of(base + stride + lane);
      load_band(next, ahead);
    } else {
      load_band(it, w);
      next = item_of(base + stride + lane);
    }
    auto value = [&](int r, int k) -> float { return unpack_value<In>(w[r], k); };
    // Column amax, NaN-propagating first (free NaN detection), NaN-ignoring where a NaN showed.
    float amax[kVec];
    if constexpr (In::bits == 16) {  // two columns a word: one packed max for two elements, unwidened
      u32 m[kWords] = {};
#pragma unroll
      for (int r = 0; r < kRows; ++r)
#pragma unroll
        for (int i = 0; i < kWords; ++i) m[i] = max_abs_nan2<In>(m[i], w[r][i]);
#pragma unroll
      for (int k = 0; k < kVec; ++k) amax[k] = fabsf(unpack_value<In>(m, k));
    } else {
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        float m = 0.0f;
#pragma unroll
        for (int r = 0; r < kRows; ++r) m = max_abs_nan(m, value(r, k));
        amax[k] = m;
      }
    }
    bool tile_nan = false;
#pragma unroll
    for (int k = 0; k < kVec; ++k) tile_nan |= is_nan(amax[k]);
    if (tile_nan) {
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        float m = 0.0f;
#pragma unroll
        for (int r = 0; r < kRows; ++r) m = fmaxf(m, fabsf(value(r, k)));
        amax[k] = m;
      }
    }
    if constexpr (!kPerColumn) {  // one block across kVec columns of 2^lanes_shift lanes
      float m = amax[0];
#pragma unroll
      for (int k = 1; k < kVec; ++k) m = fmaxf(m, amax[k]);
      for (u32 offset = 1u; offset <= lanes_mask; offset <<= 1) {
        m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, offset));
      }
#pragma unroll
      for (int k = 0; k < kVec; ++k) amax[k] = m;
    }
    if (!active) continue;
    float eff[kVec], rcp[kVec];
    bool fast = !tile_nan;
    if constexpr (kPerColumn) {  // kVec consecutive scales: one store
      using ScaleT = typename Mode::Scale;
      u32 stored[kVec];
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        const BlockScale bs = make_scale<Mode>(amax[k], dqs, rdqs);
        eff[k] = bs.eff;
        stored[k] = bs.stored;
      }
      const u64 first = u64(band) * cols + col0;
      if constexpr (ScaleT::bits == 32) {
#pragma unroll
        for (int k = 0; k < kVec; k += 2) {
          *reinterpret_cast<uint2*>(scale + (first + k) * 4u) = make_uint2(stored[k], stored[k + 1]);
        }
      } else {
        u64 bits = 0;
#pragma unroll
        for (int k = 0; k < kVec; ++k) bits |= u64(stored[k]) << (k * ScaleT::bits);
        store_bits<ScaleT, kVec>(scale, first, bits);
      }
    } else {
      const BlockScale bs = make_scale<Mode>(amax[0], dqs, rdqs);
      if ((lane & lanes_mask) == 0u) {
        store_scale<typename Mode::Scale>(scale, band * (groups >> lanes_shift) + (g >> lanes_shift), bs.stored);
      }
#pragma unroll
      for (int k = 0; k < kVec; ++k) eff[k] = bs.eff;
    }
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      rcp[k] = safe_reciprocal(eff[k]);
      fast &= mul_rn(amax[k], rcp[k]) <= 0x1p100f;  // the quotient16 guard; false for a zero scale
    }
    if (fast) {  // every quotient by Markstein's two FMAs (see quotient16); no NaN anywhere
      u8* out = data + (u64(row0) * cols + col0) * Data::bits / 8u;
      const u64 out_row = u64(cols) * Data::bits / 8u;  // cols is a multiple of kVec: whole bytes
      auto row_bits = [&](int r) -> u64 {
        float q[kVec];
#pragma unroll
        for (int k = 0; k < kVec; ++k) q[k] = quotient_fma(value(r, k), eff[k], rcp[k]);
        return encode_vec<Data, kVec>(q, true);
      };
      if (nrows == u32(kRows)) {  // a whole band: no row test
#pragma unroll
        for (int r = 0; r < kRows; ++r, out += out_row) store_vec<Data, kVec>(out, row_bits(r));
      } else {
#pragma unroll
        for (int r = 0; r < kRows; ++r, out += out_row) {
          if (u32(r) < nrows) store_vec<Data, kVec>(out, row_bits(r));
        }
      }
    } else {  // a NaN, a zero or extreme scale, or a huge quotient: divide element by element
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (u32(r) < nrows) {
          float q[kVec];
#pragma unroll
          for (int k = 0; k < kVec; ++k) {  // x read again (rare path): the band's registers are free
            q[k] = quantize_value(load_element<In>(x, (row0 + r) * cols + col0 + k), eff[k]);
          }
          store_bits<Data, kVec>(data, u64(row0 + r) * cols + col0, encode_vec<Data, kVec>(q, false));
        }
      }
    }
  }
}

// Large blocks, a CTA at a time (the block path): x viewed as rows x cols, blocks of block_rows x
// block_cols, up to kThreads * 64 elements (128x128, 64x256, 1x4096 folded into rows, ...): too large
// for one thread or one warp. A CTA takes `group` blocks stacked down the rows at once (group > 1
// when the blocks are small, so that each CTA keeps up to 64 KiB of loads in flight). Its threads tile
// them, 2^tpr_shift threads across a row (kVec consecutive columns each, one 16-byte load), the rest
// down the rows; each thread loads its whole share at once (up to 16 independent loads), pass p of a
// thread (rows trow + p * rows_per_pass) lying in block p / block_passes. Block amaxes come from warp
// reductions and shared-memory atomics; the data is written from the registers: one read of x, where
// the general path reads it twice. Partial edge blocks load zeros past the end and store only what
// is inside.
// Tuning knobs (benchmarks/sweep_dq.py, benchmarks/device/kgap.sh): rows per thread for 16-bit inputs
// (8 keeps 32 words of x per thread, 16 as many as float32); the resident CTAs per SM that the 16-bit
// kernels' __launch_bounds__ allow (3: up to 85 registers; float32 input keeps 2, up to 128 registers
// for its 64 words of x: it spills at 3); the block amax of 16-bit inputs by packed two-element maxima
// (1: 74 registers at 3 per SM, no spills; 0 spills there) or element by element (0); the reciprocal of
// each block's effective scale and the quotient guard computed once by the block's scale thread and
// shared (1) or by every thread (0). How many CTAs per SM the grid has is the host's choice per launch,
// at most kCtasPerSm (netdsl/backends/cupy/dynamic.py, cta_ctas_per_sm, with the H100's numbers).
#ifndef NETDSL_CTA16_PASSES
#define NETDSL_CTA16_PASSES 8
#endif
#ifndef NETDSL_CTA_CTAS
#define NETDSL_CTA_CTAS 3
#endif
#ifndef NETDSL_CTA_PACKED_MAX
#define NETDSL_CTA_PACKED_MAX 1
#endif
#ifndef NETDSL_CTA_SHARED_RCP
#define NETDSL_CTA_SHARED_RCP 0
#endif
template <class In>
struct CtaShape {
  static constexpr int kVec = 16 / (In::bits / 8);  // 4 float32, 8 float16 / bfloat16: 16 bytes
  static constexpr int kWords = 4;
  static constexpr int kPasses = In::bits == 32 ? 16 : NETDSL_CTA16_PASSES;  // rows per thread
  static constexpr int kCtasPerSm = In::bits == 32 ? 2 : NETDSL_CTA_CTAS;
  static constexpr bool kPackedMax = NETDSL_CTA_PACKED_MAX && In::bits == 16;
};

template <class In, class Mode>
__global__ void __launch_bounds__(kThreads, CtaShape<In>::kCtasPerSm)
    dynamic_quantize_cta_kernel(const u8* __restrict__ x, u8* __restrict__ data, u8* __restrict__ scale,
                                u32 rows, u32 cols, u32 block_rows, u32 block_cols, u32 tpr_shift, u32 group,
                                float dqs) {
  using Data = typename Mode::Data;
  using Shape = CtaShape<In>;
  constexpr int kVec = Shape::kVec, kWords = Shape::kWords, kPasses = Shape::kPasses;
  // Per block of the group, the amax bits; three buffers by iteration, so that one is zeroed for the
  // next iteration before this iteration's barrier while no thread can still read it or write it.
  __shared__ u32 block_max[3][kPasses], block_eff[3][kPasses];
  __shared__ u32 block_rcp[NETDSL_CTA_SHARED_RCP ? 3 : 1][kPasses];  // NaN: no quotient by multiply
  const u32 rows_per_pass = u32(kThreads) >> tpr_shift;
  const u32 block_passes = (block_rows + rows_per_pass - 1u) / rows_per_pass;  // group > 1: exact
  const u32 trow = threadIdx.x >> tpr_shift;
  const u32 tcol = (threadIdx.x & ((1u << tpr_shift) - 1u)) * kVec;
  const u32 band_count = (rows + block_rows - 1u) / block_rows, block_count = (cols + block_cols - 1u) / block_cols;
  const u32 groups = (band_count + group - 1u) / group;
  const u32 items = groups * block_count;
  const u64 row_bytes = u64(cols) * (In::bits / 8);
  if (threadIdx.x < u32(kPasses)) block_max[0][threadIdx.x] = 0u;
  __syncthreads();
  u32 buffer = 0u;
  for (u32 item = blockIdx.x; item < items; item += gridDim.x) {
    const u32 g = item / block_count, bcol = item - g * block_count;
    const u32 band0 = g * group, row0 = band0 * block_rows + trow, col = bcol * block_cols + tcol;
    const u32 row_stop = group == 1u ? min(row0 - trow + block_rows, rows) : rows;
    const bool col_in = col < cols;  // cols is a multiple of kVec: a thread's columns are all in or all out
    const u32 next = buffer == 2u ? 0u : buffer + 1u;
    if (threadIdx.x < u32(kPasses)) block_max[next][threadIdx.x] = 0u;
    u32 w[kPasses][kWords];
    const u8* p = x + (u64(row0) * cols + col) * (In::bits / 8);
#pragma unroll
    for (int r = 0; r < kPasses; ++r, p += rows_per_pass * row_bytes) {
      load_row(p, col_in && u32(r) < group * block_passes && row0 + r * rows_per_pass < row_stop, w[r]);
    }
    auto value = [&](int r, int k) -> float { return unpack_value<In>(w[r], k); };
    // Each block's share of the thread, the NaN-propagating max first (free NaN detection), the
    // NaN-ignoring one again where a NaN showed; then the warp's max (non-negative floats, +Inf
    // included, order as their bits) into the block's shared word. Counters, not divisions, walk the
    // passes through the blocks.
    bool thread_nan = false;
    {
      float run = 0.0f;
      u32 packed[kWords] = {};  // kPackedMax: the share's max |x| so far, two elements a word
      u32 j = 0u, left = block_passes, first = 0u;
#pragma unroll
      for (int r = 0; r < kPasses; ++r) {
        if constexpr (Shape::kPackedMax) {
#pragma unroll
          for (int i = 0; i < kWords; ++i) packed[i] = max_abs_nan2<In>(packed[i], w[r][i]);
        } else {
#pragma unroll
          for (int k = 0; k < kVec; ++k) run = max_abs_nan(run, value(r, k));
        }
        if (--left == 0u || r + 1 == kPasses) {  // warp-uniform
          if constexpr (Shape::kPackedMax) {
#pragma unroll
            for (int k = 0; k < kVec; ++k) run = max_abs_nan(run, unpack_value<In>(packed, k));
#pragma unroll
            for (int i = 0; i < kWords; ++i) packed[i] = 0u;
          }
          if (is_nan(run)) {
            thread_nan = true;
            run = 0.0f;
#pragma unroll
            for (int rr = 0; rr <= r; ++rr) {
              if (u32(rr) >= first) {
#pragma unroll
                for (int k = 0; k < kVec; ++k) run = fmaxf(run, fabsf(value(rr, k)));
              }
            }
          }
          if (j < group) {
            const u32 mb = __reduce_max_sync(0xFFFFFFFFu, bits_of(run));
            if ((threadIdx.x & 31u) == 0u && mb != 0u) atomicMax(&block_max[buffer][j], mb);
          }
          run = 0.0f;
          ++j;
          left = block_passes;
          first = u32(r + 1);
        }
      }
    }
    __syncthreads();
    if (threadIdx.x < group) {  // the scales, and the effective scales for every thread
      const float amax = float_of(block_max[buffer][threadIdx.x]);
      const BlockScale bs = Mode::make(amax, dqs);
      block_eff[buffer][threadIdx.x] = bits_of(bs.eff);
      if constexpr (NETDSL_CTA_SHARED_RCP != 0) {
        const float rcp = safe_reciprocal(bs.eff);
        block_rcp[buffer][threadIdx.x] = mul_rn(amax, rcp) <= 0x1p100f ? bits_of(rcp) : kFloat32NaN;
      }
      const u32 band = band0 + threadIdx.x;
      if (band < band_count) store_scale<typename Mode::Scale>(scale, band * block_count + bcol, bs.stored);
    }
    __syncthreads();
    if (col_in) {
      u64 e = u64(row0) * cols + col;
      u32 j = 0u, left = 1u;
      float eff = 0.0f, rcp = 0.0f;
      bool fast = false;
#pragma unroll
      for (int r = 0; r < kPasses; ++r, e += u64(rows_per_pass) * cols) {
        if (u32(r) >= group * block_passes || row0 + r * rows_per_pass >= row_stop) break;
        if (--left == 0u) {  // the next block: its effective scale, as its scale thread computed it
          eff = float_of(block_eff[buffer][j]);
          if constexpr (NETDSL_CTA_SHARED_RCP != 0) {
            rcp = float_of(block_rcp[buffer][j]);
            fast = !thread_nan && !is_nan(rcp);
          } else {
            rcp = safe_reciprocal(eff);
            fast = !thread_nan && mul_rn(float_of(block_max[buffer][j]), rcp) <= 0x1p100f;  // quotient16's guard
          }
          ++j;
          left = block_passes;
        }
        float q[kVec];
        if (fast) {  // Markstein's two FMAs (see quotient16); no NaN anywhere
#pragma unroll
          for (int k = 0; k < kVec; ++k) q[k] = quotient_fma(value(r, k), eff, rcp);
        } else {  // a NaN, a zero or extreme scale, or a huge quotient: divide
#pragma unroll
          for (int k = 0; k < kVec; ++k) q[k] = quantize_value(value(r, k), eff);
        }
        store_bits<Data, kVec>(data, e, encode_vec<Data, kVec>(q, fast));
      }
    }
    buffer = next;
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
