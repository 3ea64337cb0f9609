// netdsl number formats on the GPU: the CUDA twin of netdsl/dtypes.py (rules: SEMANTICS.md).
//
// Every type is a tag struct in netdsl::type with
//   bits               storage bits per element (4-bit types are packed two per byte on the GPU)
//   decode(code)       the exact float32 value of a storage code
//   encode(v)          round a float32 to the type: RNE, saturating where the type saturates,
//                      NaN/Inf by SEMANTICS.md, canonical NaN codes
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

NETDSL_HD bool is_nan(float v) { return v != v; }

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
  NETDSL_D static u32 encode2(float lo, float hi) {
    u32 w;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(w) : "f"(hi), "f"(lo));
    if (is_nan(lo)) w = (w & 0xFFFF0000u) | kNaN;
    if (is_nan(hi)) w = (w & 0x0000FFFFu) | (kNaN << 16);
    return w;
  }
};

struct int8 {
  static constexpr int bits = 8;
  // Rounding boundaries (k + 1/2, |k + 1/2| <= 127.5) have their low 16 float32 mantissa bits zero.
  NETDSL_HD static float decode(u32 code) { return float(int(code << 24) >> 24); }
  NETDSL_HD static u32 encode(float v) { return encode_int<-128, 127>(v) & 0xFFu; }
};

struct int4 {
  static constexpr int bits = 4;
  NETDSL_HD static float decode(u32 code) { return float(int(code << 28) >> 28); }
  NETDSL_HD static u32 encode(float v) { return encode_int<-8, 7>(v) & 0xFu; }
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

template <class T>
NETDSL_HD void unpack16(const u32 (&w)[Chunk<T>::kWords], float (&v)[16]) {
  constexpr u32 kMask = T::bits == 32 ? 0xFFFFFFFFu : (1u << T::bits) - 1u;
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    v[j] = T::decode((w[(j * T::bits) / 32] >> ((j * T::bits) % 32)) & kMask);
  }
}

}  // namespace netdsl
