// netdsl number formats on the GPU: the CUDA twin of netdsl/dtypes.py (rules: docs/semantics.md).
//
// Every type is a tag struct in netdsl::type with
//   bits               storage bits per element (4-bit types are packed two per byte on the GPU)
//   decode(code)       the exact float32 value of a storage code
//   encode(v)          round a float32 to the type: RNE, saturating where the type saturates,
//                      NaN/Inf by docs/semantics.md, canonical NaN codes
// and pack16/unpack16 move a chunk of 16 elements between floats and packed 32-bit words.
//
// Build without fast-math and without flush-to-zero: e8m0's smallest scale, 2^-127, and every
// decode bit trick below rely on float32 subnormals. Products use __fmul_rn so that no
// multiply is ever contracted into an FMA.
//
// No standard headers: the file compiles under NVRTC as is, and for the host (nvcc) where the
// pure functions are __host__ __device__ (the fp8/float16/bfloat16 encoders use PTX and are
// device-only).
#pragma once

namespace netdsl {

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

template <class A, class B>
constexpr bool same_type = false;
template <class A>
constexpr bool same_type<A, A> = true;

#define NETDSL_HD __host__ __device__ __forceinline__
#define NETDSL_D __device__ __forceinline__

NETDSL_HD u32 bits_of(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  u32 u;
  __builtin_memcpy(&u, &f, 4);
  return u;
#endif
}

NETDSL_HD float float_of(u32 u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
#endif
}

// One float32 rounding of a*b, never fused with a neighbouring add.
NETDSL_HD float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  volatile float p = a * b;
  return p;
#endif
}

// One float32 rounding of a*b+c (a true FMA on both sides).
NETDSL_HD float fma_rn(float a, float b, float c) {
#ifdef __CUDA_ARCH__
  return __fmaf_rn(a, b, c);
#else
  return __builtin_fmaf(a, b, c);
#endif
}

NETDSL_HD bool is_nan(float v) { return v != v; }

// max(m, |v|) where a NaN on either side gives NaN (PTX max.NaN, sm_80+): one instruction like fmaxf,
// and a NaN anywhere in a chunk shows in the result, which tells the kernels when the NaN-free
// encoders below may run.
NETDSL_D float max_abs_nan(float m, float v) {
  float r;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(m), "f"(fabsf(v)));
  return r;
}

constexpr u32 kFloat32NaN = 0x7FC00000u;

// Round to nearest integer, ties to even (the current rounding mode on the host, RNE by default).
NETDSL_HD float round_half_even(float v) {
#ifdef __CUDA_ARCH__
  return rintf(v);
#else
  return __builtin_rintf(v);
#endif
}

// Saturating RNE to a signed integer range; NaN -> 0 (clamp first, then round: same result here).
template <int kLo, int kHi>
NETDSL_HD u32 encode_int(float v) {
  float c = fminf(fmaxf(v, float(kLo)), float(kHi));
  int q = int(round_half_even(c));
  return is_nan(v) ? 0u : u32(q);
}

namespace type {

struct float32 {
  static constexpr int bits = 32;
  NETDSL_HD static float decode(u32 code) { return float_of(code); }
  NETDSL_HD static u32 encode(float v) { return is_nan(v) ? kFloat32NaN : bits_of(v); }
};

struct float16 {
  static constexpr int bits = 16;
  static constexpr u32 kNaN = 0x7E00u;
  NETDSL_HD static float decode(u32 code) {
#ifdef __CUDA_ARCH__
    float f;
    asm("{ .reg .b16 h; cvt.u16.u32 h, %1; cvt.f32.f16 %0, h; }" : "=f"(f) : "r"(code));
    return f;
#else
    // Exponent field 31 is Inf/NaN; everything else scales exactly from float32 bits (subnormals too).
    u32 sign = (code & 0x8000u) << 16, mag = code & 0x7FFFu;
    if (mag >= 0x7C00u) return float_of(sign | 0x7F800000u | ((mag & 0x3FFu) << 13));
    return float_of(sign | bits_of(mul_rn(float_of(mag << 13), 0x1p112f)));
#endif
  }
  NETDSL_D static u32 encode(float v) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return is_nan(v) ? kNaN : u32(h);
  }
  // Two values in one instruction: lo in bits 0..15, hi in bits 16..31.
  // For lo and hi not NaN (no canonical-NaN fix-up needed).
  NETDSL_D static u32 encode2_nonan(float lo, float hi) {
    u32 w;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(w) : "f"(hi), "f"(lo));
    return w;
  }
  NETDSL_D static u32 encode2(float lo, float hi) {
    u32 w;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(w) : "f"(hi), "f"(lo));
    if (is_nan(lo)) w = (w & 0xFFFF0000u) | kNaN;
    if (is_nan(hi)) w = (w & 0x0000FFFFu) | (kNaN << 16);
    return w;
  }
};

struct bfloat16 {
  static constexpr int bits = 16;
  static constexpr u32 kNaN = 0x7FC0u;
  NETDSL_HD static float decode(u32 code) { return float_of(code << 16); }
  NETDSL_D static u32 encode(float v) {
    u16 h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return is_nan(v) ? kNaN : u32(h);
  }
  NETDSL_D static u32 encode2_nonan(float lo, float hi) {
    u32 w;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(w) : "f"(hi), "f"(lo));
    return w;
  }
  NETDSL_D static u32 encode2(float lo, float hi) {
    u32 w;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(w) : "f"(hi), "f"(lo));
    if (is_nan(lo)) w = (w & 0xFFFF0000u) | kNaN;
    if (is_nan(hi)) w = (w & 0x0000FFFFu) | (kNaN << 16);
    return w;
  }
};

// decode(encode(v)) of a saturating integer type for v not NaN, in float arithmetic only: clamp,
// then adding and subtracting 1.5 * 2^23 rounds to the nearest integer, ties to even (|v| <= 128).
// Integer types have no -0: (-0.3 + M) - M is +0, as decode(0) is.
template <int kLo, int kHi>
NETDSL_HD float round_trip_int_nonan(float v) {
  const float c = fminf(fmaxf(v, float(kLo)), float(kHi));
  return (c + 0x1.8p23f) - 0x1.8p23f;
}

// encode(v) of a saturating integer type for v not NaN, in the low bits of the result (two's
// complement; the higher bits are garbage): after the clamp, c + 1.5 * 2^23 has the bits
// 0x4B400000 + round_half_even(c). No float-to-integer conversion instruction.
template <int kLo, int kHi>
NETDSL_HD u32 encode_int_low_nonan(float v) {
  return bits_of(fminf(fmaxf(v, float(kLo)), float(kHi)) + 0x1.8p23f);
}

// __byte_perm on both sides: bytes 0..3 of x then of y, selector nibbles pick the result's bytes.
NETDSL_HD u32 byte_perm(u32 x, u32 y, u32 selector) {
#ifdef __CUDA_ARCH__
  return __byte_perm(x, y, selector);
#else
  const u64 both = (u64(y) << 32) | x;
  u32 r = 0;
  for (int i = 0; i < 4; ++i) r |= u32((both >> (8 * ((selector >> (4 * i)) & 7u))) & 0xFFu) << (8 * i);
  return r;
#endif
}

struct int8 {
  static constexpr int bits = 8;
  // Rounding boundaries (k + 1/2, |k + 1/2| <= 127.5) have their low 16 float32 mantissa bits zero.
  NETDSL_HD static float decode(u32 code) { return float(int(code << 24) >> 24); }
  NETDSL_HD static u32 encode(float v) { return encode_int<-128, 127>(v) & 0xFFu; }
  NETDSL_HD static float round_trip_nonan(float v) { return round_trip_int_nonan<-128, 127>(v); }
};

struct int4 {
  static constexpr int bits = 4;
  NETDSL_HD static float decode(u32 code) { return float(int(code << 28) >> 28); }
  NETDSL_HD static u32 encode(float v) { return encode_int<-8, 7>(v) & 0xFu; }
  NETDSL_HD static float round_trip_nonan(float v) { return round_trip_int_nonan<-8, 7>(v); }
};

// E4M3 "fn": bias 7, no Inf, NaN = S.1111.111, max 448, subnormal quantum 2^-9.
struct fp8 {
  static constexpr int bits = 8;
  static constexpr u32 kNaN = 0x7Fu;
  NETDSL_HD static float decode(u32 code) {
    // The 7 magnitude bits placed at float32 bit 20 read as 2^-120 times the value (subnormals
    // land on float32 subnormals); one exact multiply by 2^120 restores it.
    u32 mag = code & 0x7Fu;
    float f = mul_rn(float_of(mag << 20), 0x1p120f);
    return mag == 0x7Fu ? float_of(kFloat32NaN) : float_of(bits_of(f) | ((code & 0x80u) << 24));
  }
  // cvt.rn.satfinite: RNE, finite overflow and +-Inf saturate to +-448, NaN stays NaN; the NaN
  // code is made canonical (0x7F) here whatever sign the hardware gives it.
  NETDSL_D static u32 encode2(float lo, float hi) {
    u16 h;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(h) : "f"(hi), "f"(lo));
    return canonical_nan4(u32(h));
  }
  NETDSL_D static u32 encode(float v) { return encode2(v, 0.0f) & 0xFFu; }
  // For lo and hi not NaN: the hardware conversion alone (no NaN byte to make canonical).
  NETDSL_D static u32 encode2_nonan(float lo, float hi) {
    u16 h;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(h) : "f"(hi), "f"(lo));
    return u32(h);
  }
  // decode(encode(v)) for v not NaN, in float arithmetic: clamp |v| to 448, then adding and
  // subtracting M = 2^(e + 20), with 2^e the binade of max(|v|, 2^-6), rounds to E4M3's spacing
  // there (2^(e - 3); 2^-9 for subnormals), ties to even with the code's parity (M is a power of two
  // at least 2^14); the result takes v's sign (-0 and values rounding to zero keep it). Checked on the
  // host against decode(encode(v)) for all 2^32 float32 inputs (benchmarks/profile_gpu.py notes).
  NETDSL_HD static float round_trip_nonan(float v) {
    const float a = fminf(fabsf(v), 448.0f);
    const float e = float_of(bits_of(fmaxf(a, 0x1p-6f)) & 0x7F800000u);
    const float r = fma_rn(e, -0x1p20f, fma_rn(e, 0x1p20f, a));
    return float_of(bits_of(r) | (bits_of(v) & 0x80000000u));
  }
  // Four fp8 codes in a word: any byte S.1111.111 becomes 0x7F.
  NETDSL_HD static u32 canonical_nan4(u32 w) {
    u32 nan_bytes = ((w & 0x7F7F7F7Fu) + 0x01010101u) & 0x80808080u;
    return w & ~nan_bytes;
  }
};

// E2M1: 0, 0.5, 1, 1.5, 2, 3, 4, 6; saturates to +-6; NaN -> +6 (ONNX float4 rule); keeps -0.
struct fp4 {
  static constexpr int bits = 4;
  NETDSL_HD static float decode(u32 code) {
    // Same trick as fp8: magnitude bits at float32 bit 22 read as 2^-126 times the value.
    float f = mul_rn(float_of((code & 0x7u) << 22), 0x1p126f);
    return float_of(bits_of(f) | ((code & 0x8u) << 28));
  }
  // Mostly float arithmetic (the H100 SM has twice the float32 lanes of integer ones): adding and
  // subtracting M = 2^(22 + k) rounds |v| in [0, 2), [2, 4), [4, inf) to a multiple of 0.5, 1, 2,
  // ties to even, in one IEEE rounding each -- exactly E2M1's grid there, with the code parity of
  // the grid; then saturate at 6 (fminf also maps NaN to 6), and the value times 2^-126 has the
  // 3-bit magnitude code at bit 22 (the inverse of decode's trick). Checked against an independent
  // encoder on all 2^32 float32 inputs.
  NETDSL_HD static u32 encode(float v) {
    const float a = fabsf(v);
    const float m = a < 2.0f ? 0x1p22f : (a < 4.0f ? 0x1p23f : 0x1p24f);
    const float r = fminf((a + m) - m, 6.0f);
    const u32 mag = bits_of(mul_rn(r, 0x1p-126f)) >> 22;
    const u32 sign = is_nan(v) ? 0u : (bits_of(v) >> 31) << 3;  // NaN -> +6
    return sign | mag;
  }
  // The same rounding with fewer compare/select (integer-pipe) instructions, for v not NaN:
  // clamp |v| to 6, then M = 2^22 * 2^e with 2^e the binade of max(|v|, 1) (1, 2 or 4): one FMA
  // adds M (rounding to E2M1's spacing 2^(e - 1), ties to even with the code's parity), one
  // subtracts it. Returns |v| rounded: 0, 0.5, 1, 1.5, 2, 3, 4 or 6. Checked on the host against
  // encode() for all 2^32 float32 inputs that are not NaN.
  NETDSL_HD static float round_magnitude_nonan(float v) {
    const float a = fminf(fabsf(v), 6.0f);
    const float e = float_of(bits_of(fmaxf(a, 1.0f)) & 0x7F800000u);
    return fma_rn(e, -0x1p22f, fma_rn(e, 0x1p22f, a));
  }
  // encode(v) for v not NaN, placed in bits 28..31 (sign at 31; bits 0..27 zero): the rounded magnitude times 2^-126
  // has the 3-bit code at bit 22 (decode's trick backwards).
  NETDSL_HD static u32 encode_high_nonan(float v) {
    return (bits_of(mul_rn(round_magnitude_nonan(v), 0x1p-126f)) << 6) | (bits_of(v) & 0x80000000u);
  }
  NETDSL_HD static float round_trip_nonan(float v) {
    return float_of(bits_of(round_magnitude_nonan(v)) | (bits_of(v) & 0x80000000u));
  }
};

// 2^(k - 127), k = 0..254; 0xFF = NaN. No zero, no sign.
struct e8m0 {
  static constexpr int bits = 8;
  NETDSL_HD static float decode(u32 code) {
    code &= 0xFFu;
    return code == 0xFFu ? float_of(kFloat32NaN) : float_of(code == 0u ? 0x00400000u : code << 23);
  }
  // MXFP8 scale: for float32 q >= 0 (not NaN), the smallest e with q <= 2^e, clamped to
  // [-127, 127]; q = 0 gives -127, Inf gives 127. Returns the code e + 127.
  NETDSL_HD static u32 round_up(float q) {
    u32 u = bits_of(q);
    if (u <= 0x00400000u) return 0u;  // q <= 2^-127
    u32 k = (u + 0x7FFFFFu) >> 23;     // biased exponent, plus one unless q is a power of two
    return k < 254u ? k : 254u;
  }
};

}  // namespace type

// Two 16-bit floats (T float16 or bfloat16) at a time: per half, max(|m|, |v|), or a NaN where
// either is NaN; the sign bits are not meaningful (xorsign), read the magnitudes. Exact (a max), and
// one instruction for two elements where widening and max_abs_nan take four.
template <class T>
NETDSL_D u32 max_abs_nan2(u32 m, u32 v) {
  u32 r;
  if constexpr (same_type<T, type::bfloat16>) {
    asm("max.NaN.xorsign.abs.bf16x2 %0, %1, %2;" : "=r"(r) : "r"(m), "r"(v));
  } else {
    asm("max.NaN.xorsign.abs.f16x2 %0, %1, %2;" : "=r"(r) : "r"(m), "r"(v));
  }
  return r;
}

// Two elements of one type into 2 * bits bits (lo first); fp8, float16 and bfloat16 convert
// pairs in one instruction.
template <class T>
NETDSL_D u32 encode2(float lo, float hi) {
  return T::encode(lo) | (T::encode(hi) << T::bits);
}
template <>
NETDSL_D u32 encode2<type::fp8>(float lo, float hi) { return type::fp8::encode2(lo, hi); }
template <>
NETDSL_D u32 encode2<type::float16>(float lo, float hi) { return type::float16::encode2(lo, hi); }
template <>
NETDSL_D u32 encode2<type::bfloat16>(float lo, float hi) { return type::bfloat16::encode2(lo, hi); }

// A chunk is 16 consecutive elements: 16 * bits / 32 words, element j at bit (j * bits) % 32 of
// word (j * bits) / 32 -- for 4-bit types element 2k is the low nibble of byte k (ONNX layout).
template <class T>
struct Chunk {
  static constexpr int kWords = T::bits / 2;
  static constexpr int kBytes = 2 * T::bits;
};

template <class T>
NETDSL_D void pack16(const float (&v)[16], u32 (&w)[Chunk<T>::kWords]) {
  if constexpr (T::bits == 32) {
#pragma unroll
    for (int j = 0; j < 16; ++j) w[j] = T::encode(v[j]);
  } else {
    constexpr int kPairsPerWord = 16 / T::bits;
#pragma unroll
    for (int i = 0; i < Chunk<T>::kWords; ++i) {
      u32 word = 0;
#pragma unroll
      for (int p = 0; p < kPairsPerWord; ++p) {
        int j = (i * kPairsPerWord + p) * 2;
        word |= encode2<T>(v[j], v[j + 1]) << (p * 2 * T::bits);
      }
      w[i] = word;
    }
  }
}

// int8 / int4 chunks without NaN: the low bits of encode_int_low_nonan gathered with byte permutes.
template <class T>
NETDSL_HD void pack16_int_nonan(const float (&v)[16], u32 (&w)[Chunk<T>::kWords]) {
  if constexpr (T::bits == 8) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const u32 b0 = type::encode_int_low_nonan<-128, 127>(v[4 * i]), b1 = type::encode_int_low_nonan<-128, 127>(v[4 * i + 1]);
      const u32 b2 = type::encode_int_low_nonan<-128, 127>(v[4 * i + 2]), b3 = type::encode_int_low_nonan<-128, 127>(v[4 * i + 3]);
      w[i] = type::byte_perm(type::byte_perm(b0, b1, 0x0040u), type::byte_perm(b2, b3, 0x0040u), 0x5410u);
    }
  } else {
    u32 bytes[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) {  // element 2k in the low nibble, 2k + 1 in the high one
      const u32 lo = type::encode_int_low_nonan<-8, 7>(v[2 * k]), hi = type::encode_int_low_nonan<-8, 7>(v[2 * k + 1]);
      bytes[k] = (lo & 0x0Fu) | ((hi << 4) & 0xF0u);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      w[i] = type::byte_perm(type::byte_perm(bytes[4 * i], bytes[4 * i + 1], 0x0040u),
                       type::byte_perm(bytes[4 * i + 2], bytes[4 * i + 3], 0x0040u), 0x5410u);
    }
  }
}

// pack16 for a chunk known to hold no NaN: the same codes with cheaper encoders (no NaN fix-ups;
// fp4 through encode_high_nonan, eight nibbles per word by shift-and-add).
template <class T>
NETDSL_D void pack16_nonan(const float (&v)[16], u32 (&w)[Chunk<T>::kWords]) {
  if constexpr (same_type<T, type::fp4>) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      u32 word = 0;
#pragma unroll
      for (int k = 0; k < 8; ++k) word += type::fp4::encode_high_nonan(v[8 * i + k]) >> (28 - 4 * k);
      w[i] = word;
    }
  } else if constexpr (same_type<T, type::fp8> || same_type<T, type::float16> || same_type<T, type::bfloat16>) {
    constexpr int kPairsPerWord = 16 / T::bits;
#pragma unroll
    for (int i = 0; i < Chunk<T>::kWords; ++i) {
      u32 word = 0;
#pragma unroll
      for (int p = 0; p < kPairsPerWord; ++p) {
        int j = (i * kPairsPerWord + p) * 2;
        word |= T::encode2_nonan(v[j], v[j + 1]) << (p * 2 * T::bits);
      }
      w[i] = word;
    }
  } else if constexpr (same_type<T, type::float32>) {
#pragma unroll
    for (int j = 0; j < 16; ++j) w[j] = bits_of(v[j]);
  } else {
    pack16_int_nonan<T>(v, w);
  }
}

// Element k of values of type T packed in words (element k at bit k * bits), widened exactly.
template <class T, int kWords>
NETDSL_HD float unpack_value(const u32 (&w)[kWords], int k) {
  constexpr u32 kMask = T::bits == 32 ? 0xFFFFFFFFu : (1u << T::bits) - 1u;
  return T::decode((w[(k * T::bits) / 32] >> ((k * T::bits) % 32)) & kMask);
}

template <class T>
NETDSL_HD void unpack16(const u32 (&w)[Chunk<T>::kWords], float (&v)[16]) {
#pragma unroll
  for (int j = 0; j < 16; ++j) v[j] = unpack_value<T>(w, j);
}

}  // namespace netdsl
