// N-API bindings for kernels.h. Tensors arrive as the typed arrays the tfjs
// cpu backend stores them in (no copies); sizes and shapes as numbers or
// Int32Arrays. Every length is checked here, so a caller's mistake is a
// JavaScript exception, never a write outside an array.
#include <malloc.h>
#include <node_api.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "kernels.h"

namespace {

struct Args {
  napi_env env;
  napi_value argv[16];
  size_t argc = 16;
  bool failed = false;

  Args(napi_env e, napi_callback_info info) : env(e) { napi_get_cb_info(e, info, &argc, argv, nullptr, nullptr); }

  void fail(const std::string& msg) {
    if (!failed) napi_throw_error(env, "ERR_RETROMAE_NATIVE", msg.c_str());
    failed = true;
  }

  // typed array i: data pointer, element count and element size
  void* array(size_t i, int64_t* length, int* elemBytes = nullptr, bool nullable = false,
              napi_typedarray_type* typeOut = nullptr) {
    if (failed) return nullptr;
    if (i >= argc) {
      fail("missing argument " + std::to_string(i));
      return nullptr;
    }
    napi_valuetype t;
    napi_typeof(env, argv[i], &t);
    if (nullable && (t == napi_null || t == napi_undefined)) {
      *length = 0;
      return nullptr;
    }
    bool is = false;
    napi_is_typedarray(env, argv[i], &is);
    if (!is) {
      fail("argument " + std::to_string(i) + " must be a typed array");
      return nullptr;
    }
    napi_typedarray_type type;
    size_t len;
    void* data;
    napi_get_typedarray_info(env, argv[i], &type, &len, &data, nullptr, nullptr);
    *length = static_cast<int64_t>(len);
    int bytes = 0;
    switch (type) {
      case napi_float32_array:
      case napi_int32_array:
      case napi_uint32_array: bytes = 4; break;
      case napi_uint8_array:
      case napi_int8_array:
      case napi_uint8_clamped_array: bytes = 1; break;
      default: fail("argument " + std::to_string(i) + " has an unsupported element type");
    }
    if (elemBytes) *elemBytes = bytes;
    if (typeOut) *typeOut = type;
    return data;
  }

  // a typed array of `want` with at least `need` elements
  void* typed(size_t i, int64_t need, napi_typedarray_type want, const char* name, bool nullable) {
    int64_t len = 0;
    napi_typedarray_type type = napi_float32_array;
    void* p = array(i, &len, nullptr, nullable, &type);
    if (failed || (p == nullptr && nullable)) return nullptr;
    if (type != want) {
      fail("argument " + std::to_string(i) + " must be a " + name);
    } else if (len < need) {
      fail("argument " + std::to_string(i) + " holds " + std::to_string(len) + " values; the kernel needs " +
           std::to_string(need));
    }
    return p;
  }

  float* f32(size_t i, int64_t need, bool nullable = false) {
    return static_cast<float*>(typed(i, need, napi_float32_array, "Float32Array", nullable));
  }

  int32_t* i32(size_t i, int64_t need) {
    return static_cast<int32_t*>(typed(i, need, napi_int32_array, "Int32Array", false));
  }

  double num(size_t i) {
    double v = 0;
    if (failed) return 0;
    if (i >= argc || napi_get_value_double(env, argv[i], &v) != napi_ok) fail("argument " + std::to_string(i) + " must be a number");
    return v;
  }

  int64_t integer(size_t i) { return static_cast<int64_t>(num(i)); }

  bool flag(size_t i) {
    bool v = false;
    if (!failed && (i >= argc || napi_get_value_bool(env, argv[i], &v) != napi_ok)) fail("argument " + std::to_string(i) + " must be a boolean");
    return v;
  }

  // an Int32Array of up to 8 dims, widened
  int dims(size_t i, int64_t* out) {
    int64_t len = 0;
    int32_t* p = static_cast<int32_t*>(array(i, &len));
    if (failed) return 0;
    if (len < 1 || len > 8) {
      fail("a shape must have 1 to 8 dimensions");
      return 0;
    }
    for (int64_t d = 0; d < len; d++) out[d] = p[d];
    return static_cast<int>(len);
  }
};

napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

napi_value number(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

// matmul(a, b, out, batch, batchA, batchB, M, N, K, transA, transB, bias|null, act)
napi_value Matmul(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int64_t batch = a.integer(3), bA = a.integer(4), bB = a.integer(5), M = a.integer(6), N = a.integer(7),
                K = a.integer(8);
  const bool tA = a.flag(9), tB = a.flag(10);
  const float* x = a.f32(0, bA * M * K);
  const float* y = a.f32(1, bB * K * N);
  float* out = a.f32(2, batch * M * N);
  int64_t biasLen = 0;
  const float* bias = nullptr;
  if (!a.failed) {
    bias = static_cast<const float*>(a.array(11, &biasLen, nullptr, true));
    if (bias && biasLen != 1 && biasLen != N) a.fail("bias must hold 1 or N values");
  }
  const int act = static_cast<int>(a.integer(12));
  if (!a.failed && (bA < 1 || bB < 1 || batch % bA != 0 || batch % bB != 0)) a.fail("batch sizes do not broadcast");
  if (a.failed) return nullptr;
  rm::matmul(x, y, out, batch, bA, bB, M, N, K, tA, tB, bias, biasLen, act);
  return undefined(env);
}

// binary(op, a, b, out, dims, strideA, strideB)
napi_value Binary(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int op = static_cast<int>(a.integer(0));
  int64_t dims[8], sa[8], sb[8];
  const int nd = a.dims(4, dims);
  const int nda = a.dims(5, sa);
  const int ndb = a.dims(6, sb);
  if (a.failed) return nullptr;
  if (nd != nda || nd != ndb) {
    a.fail("dims and strides must have the same rank");
    return nullptr;
  }
  int64_t total = 1, lastA = 0, lastB = 0;
  for (int d = 0; d < nd; d++) {
    total *= dims[d];
    lastA += (dims[d] - 1) * sa[d];
    lastB += (dims[d] - 1) * sb[d];
  }
  if (total == 0) return undefined(env);
  const float* x = a.f32(1, lastA + 1);
  const float* y = a.f32(2, lastB + 1);
  float* out = a.f32(3, total);
  if (a.failed) return nullptr;
  rm::binary(op, x, y, out, nd, dims, sa, sb);
  return undefined(env);
}

// unary(op, x, out, alpha)
napi_value Unary(napi_env env, napi_callback_info info) {
  Args a(env, info);
  int64_t n = 0;
  const int op = static_cast<int>(a.integer(0));
  a.array(1, &n);
  const float* x = a.f32(1, n);
  float* out = a.f32(2, n);
  const float alpha = static_cast<float>(a.num(3));
  if (a.failed) return nullptr;
  rm::unary(op, x, out, n, alpha);
  return undefined(env);
}

// scaledMaskedSoftmax(x, mask, out, B, heads, Lq, Lk, maskRows, scale)
napi_value ScaledMaskedSoftmax(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int64_t B = a.integer(3), heads = a.integer(4), Lq = a.integer(5), Lk = a.integer(6), maskRows = a.integer(7);
  const float scale = static_cast<float>(a.num(8));
  if (!a.failed && (B < 0 || heads < 0 || Lq < 0 || Lk < 1 || (maskRows != 1 && maskRows != Lq))) a.fail("the mask must have 1 or Lq rows");
  const float* x = a.f32(0, B * heads * Lq * Lk);
  const float* mask = a.f32(1, B * maskRows * Lk);
  float* out = a.f32(2, B * heads * Lq * Lk);
  if (a.failed) return nullptr;
  rm::scaledMaskedSoftmax(x, mask, out, B, heads, Lq, Lk, maskRows, scale);
  return undefined(env);
}

// attention(q, k, v, mask, out, B, heads, Lq, Lk, dh, maskRows, scale, ldq, ldkv)
napi_value Attention(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int64_t B = a.integer(5), heads = a.integer(6), Lq = a.integer(7), Lk = a.integer(8), dh = a.integer(9),
                maskRows = a.integer(10), ldq = a.integer(12), ldkv = a.integer(13);
  const float scale = static_cast<float>(a.num(11));
  const int64_t H = heads * dh;
  if (!a.failed && (B < 0 || heads < 1 || Lq < 0 || Lk < 1 || dh < 1 || (maskRows != 1 && maskRows != Lq))) {
    a.fail("attention needs heads, Lk and dh of at least 1 and a mask of 1 or Lq rows");
  }
  if (!a.failed && (ldq < H || ldkv < H)) a.fail("attention needs rows of q, k and v at least heads * dh wide");
  // q, k and v may be views into one stacked projection: each needs its last row's first H values
  const auto span = [&](int64_t rows, int64_t ld) { return rows > 0 ? (rows - 1) * ld + H : 0; };
  const float* q = a.f32(0, span(B * Lq, ldq));
  const float* k = a.f32(1, span(B * Lk, ldkv));
  const float* v = a.f32(2, span(B * Lk, ldkv));
  const float* mask = a.f32(3, B * maskRows * Lk);
  float* out = a.f32(4, B * Lq * H);
  if (a.failed) return nullptr;
  rm::attention(q, k, v, mask, out, B, heads, Lq, Lk, dh, maskRows, scale, ldq, ldkv);
  return undefined(env);
}

// scaledSoftmaxGrad(p, dp, dx, rows, cols, scale)
napi_value ScaledSoftmaxGrad(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int64_t rows = a.integer(3), cols = a.integer(4);
  const float scale = static_cast<float>(a.num(5));
  const float* p = a.f32(0, rows * cols);
  const float* dp = a.f32(1, rows * cols);
  float* dx = a.f32(2, rows * cols);
  if (a.failed) return nullptr;
  rm::scaledSoftmaxGrad(p, dp, dx, rows, cols, scale);
  return undefined(env);
}

// addLayerNorm(x, residual | null, gamma, beta, y, xhat | null, rstd | null, rows, H, eps): xhat and rstd (for the
// gradient) both given or both null (inference)
napi_value AddLayerNorm(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int64_t rows = a.integer(7), H = a.integer(8);
  const float eps = static_cast<float>(a.num(9));
  const float* x = a.f32(0, rows * H);
  const float* residual = a.f32(1, rows * H, true);
  const float* gamma = a.f32(2, H);
  const float* beta = a.f32(3, H);
  float* y = a.f32(4, rows * H);
  float* xhat = a.f32(5, rows * H, true);
  float* rstd = a.f32(6, rows, true);
  if (!a.failed && (xhat == nullptr) != (rstd == nullptr)) a.fail("addLayerNorm takes xhat and rstd both, or neither");
  if (a.failed) return nullptr;
  rm::addLayerNorm(x, residual, gamma, beta, y, xhat, rstd, rows, H, eps);
  return undefined(env);
}

// layerNormGrad(dy, xhat, rstd, gamma, ds, dgamma, dbeta, rows, H)
napi_value LayerNormGrad(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int64_t rows = a.integer(7), H = a.integer(8);
  const float* dy = a.f32(0, rows * H);
  const float* xhat = a.f32(1, rows * H);
  const float* rstd = a.f32(2, rows);
  const float* gamma = a.f32(3, H);
  float* ds = a.f32(4, rows * H);
  float* dgamma = a.f32(5, H);
  float* dbeta = a.f32(6, H);
  if (a.failed) return nullptr;
  rm::layerNormGrad(dy, xhat, rstd, gamma, ds, dgamma, dbeta, rows, H);
  return undefined(env);
}

// gelu(x, out) and geluGrad(x, dy, out)
napi_value Gelu(napi_env env, napi_callback_info info) {
  Args a(env, info);
  int64_t n = 0;
  a.array(0, &n);
  const float* x = a.f32(0, n);
  float* out = a.f32(1, n);
  if (a.failed) return nullptr;
  rm::gelu(x, out, n);
  return undefined(env);
}

napi_value GeluGrad(napi_env env, napi_callback_info info) {
  Args a(env, info);
  int64_t n = 0;
  a.array(0, &n);
  const float* x = a.f32(0, n);
  const float* dy = a.f32(1, n);
  float* out = a.f32(2, n);
  if (a.failed) return nullptr;
  rm::geluGrad(x, dy, out, n);
  return undefined(env);
}

// clip(x, out, lo, hi)
napi_value Clip(napi_env env, napi_callback_info info) {
  Args a(env, info);
  int64_t n = 0;
  a.array(0, &n);
  const float* x = a.f32(0, n);
  float* out = a.f32(1, n);
  const float lo = static_cast<float>(a.num(2)), hi = static_cast<float>(a.num(3));
  if (a.failed) return nullptr;
  rm::clip(x, out, n, lo, hi);
  return undefined(env);
}

// reduce(op, x, out, outer, inner, innerAxis)
napi_value Reduce(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int op = static_cast<int>(a.integer(0));
  const int64_t outer = a.integer(3), inner = a.integer(4);
  const bool innerAxis = a.flag(5);
  const float* x = a.f32(1, outer * inner);
  float* out = a.f32(2, innerAxis ? outer : inner);
  if (a.failed) return nullptr;
  if (innerAxis) {
    rm::reduceInner(op, x, out, outer, inner);
  } else {
    rm::reduceOuter(op, x, out, outer, inner);
  }
  return undefined(env);
}

// softmax(x, out, rows, cols)
napi_value Softmax(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int64_t rows = a.integer(2), cols = a.integer(3);
  const float* x = a.f32(0, rows * cols);
  float* out = a.f32(1, rows * cols);
  if (a.failed) return nullptr;
  rm::softmax(x, out, rows, cols);
  return undefined(env);
}

// logSumExpRows(x, out, rows, cols, argmax?: Int32Array | null)
napi_value LogSumExpRows(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int64_t rows = a.integer(2), cols = a.integer(3);
  const float* x = a.f32(0, rows * cols);
  float* out = a.f32(1, rows);
  int32_t* argmax = a.argc > 4 ? static_cast<int32_t*>(a.typed(4, rows, napi_int32_array, "Int32Array", true)) : nullptr;
  if (!a.failed && cols < 1) a.fail("logSumExpRows needs at least one column");
  if (a.failed) return nullptr;
  rm::logSumExpRows(x, out, rows, cols, argmax);
  return undefined(env);
}

// softmaxMinusOneHot(x, labels, out, rows, cols, colSum?: Float32Array | null)
napi_value SoftmaxMinusOneHot(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int64_t rows = a.integer(3), cols = a.integer(4);
  const float* x = a.f32(0, rows * cols);
  const int32_t* labels = a.i32(1, rows);
  float* out = a.f32(2, rows * cols);
  float* colSum = a.argc > 5 ? a.f32(5, cols, true) : nullptr;
  if (a.failed) return nullptr;
  rm::softmaxMinusOneHot(x, labels, out, rows, cols, colSum);
  return undefined(env);
}

// transpose(x, out, dims, perm)
napi_value Transpose(napi_env env, napi_callback_info info) {
  Args a(env, info);
  int64_t dims[8], permWide[8], nx = 0, no = 0;
  int bx = 0, bo = 0;
  void* x = a.array(0, &nx, &bx);
  void* out = a.array(1, &no, &bo);
  const int nd = a.dims(2, dims);
  const int np = a.dims(3, permWide);
  if (a.failed) return nullptr;
  int64_t total = 1;
  int32_t perm[8];
  bool seen[8] = {false};
  for (int d = 0; d < nd; d++) total *= dims[d];
  for (int d = 0; d < np; d++) {
    perm[d] = static_cast<int32_t>(permWide[d]);
    if (perm[d] < 0 || perm[d] >= nd || seen[perm[d]]) {
      a.fail("perm is not a permutation of the dimensions");
      return nullptr;
    }
    seen[perm[d]] = true;
  }
  if (np != nd || bx != bo || nx < total || no < total) {
    a.fail("transpose arrays do not match the shape");
    return nullptr;
  }
  if (total > 0) rm::transpose(x, out, nd, dims, perm, bx);
  return undefined(env);
}

// gather(x, indices, out, outer, dimSize, inner) -> -1, or the position of the first bad index
napi_value Gather(napi_env env, napi_callback_info info) {
  Args a(env, info);
  int64_t nx = 0, nIdx = 0, no = 0;
  int bx = 0, bo = 0;
  void* x = a.array(0, &nx, &bx);
  a.array(1, &nIdx);
  const int32_t* idx = a.i32(1, nIdx);
  void* out = a.array(2, &no, &bo);
  const int64_t outer = a.integer(3), dimSize = a.integer(4), inner = a.integer(5);
  if (a.failed) return nullptr;
  if (bx != bo || nx < outer * dimSize * inner || no < outer * nIdx * inner) {
    a.fail("gather arrays do not match the shape");
    return nullptr;
  }
  return number(env, static_cast<double>(rm::gather(x, idx, out, outer, dimSize, inner, nIdx, bx)));
}

// A box of `size` at `offset` inside a big array of `bigDims`, and a compact
// array holding the box: the arguments of slice and place, checked.
struct Box {
  void* big = nullptr;
  void* box = nullptr;
  int ndim = 0;
  int elemBytes = 0;
  int64_t bigDims[8], offset[8], size[8];
  int64_t total = 1;
};

bool boxArgs(Args& a, size_t bigArg, size_t boxArg, size_t bigDimsArg, size_t offsetArg, size_t sizeArg, Box* b) {
  int64_t nBig = 0, nBox = 0;
  int bytesBig = 0, bytesBox = 0;
  b->big = a.array(bigArg, &nBig, &bytesBig);
  b->box = a.array(boxArg, &nBox, &bytesBox);
  b->ndim = a.dims(bigDimsArg, b->bigDims);
  const int no = a.dims(offsetArg, b->offset), ns = a.dims(sizeArg, b->size);
  if (a.failed) return false;
  int64_t bigTotal = 1;
  bool ok = b->ndim == no && b->ndim == ns && bytesBig == bytesBox;
  for (int d = 0; ok && d < b->ndim; d++) {
    ok = b->offset[d] >= 0 && b->size[d] >= 0 && b->offset[d] + b->size[d] <= b->bigDims[d];
    b->total *= b->size[d];
    bigTotal *= b->bigDims[d];
  }
  if (!ok || nBig < bigTotal || nBox < b->total) {
    a.fail("the box does not fit the array");
    return false;
  }
  b->elemBytes = bytesBig;
  return true;
}

// slice(x, out, dims, begin, size): out = the box of x
napi_value Slice(napi_env env, napi_callback_info info) {
  Args a(env, info);
  Box b;
  if (!boxArgs(a, 0, 1, 2, 3, 4, &b)) return nullptr;
  if (b.total > 0) rm::slice(b.big, b.box, b.ndim, b.bigDims, b.offset, b.size, b.elemBytes);
  return undefined(env);
}

// place(x, out, dims, outDims, offset): the box of out = x
napi_value Place(napi_env env, napi_callback_info info) {
  Args a(env, info);
  Box b;
  if (!boxArgs(a, 1, 0, 3, 4, 2, &b)) return nullptr;
  if (b.total > 0) rm::place(b.box, b.big, b.ndim, b.size, b.bigDims, b.offset, b.elemBytes);
  return undefined(env);
}

// fill4(out, value, asFloat): every element of a 4-byte typed array
napi_value Fill4(napi_env env, napi_callback_info info) {
  Args a(env, info);
  int64_t n = 0;
  int bytes = 0;
  void* out = a.array(0, &n, &bytes);
  const double v = a.num(1);
  const bool asFloat = a.flag(2);
  if (!a.failed && bytes != 4) a.fail("fill4 needs a 4-byte typed array");
  if (a.failed) return nullptr;
  uint32_t bits;
  if (asFloat) {
    const float f = static_cast<float>(v);
    std::memcpy(&bits, &f, sizeof bits);
  } else {
    bits = static_cast<uint32_t>(static_cast<int32_t>(v));
  }
  rm::fill4(out, n, bits);
  return undefined(env);
}

// oneHot(indices, out, depth, onValue, offValue)
napi_value OneHot(napi_env env, napi_callback_info info) {
  Args a(env, info);
  int64_t n = 0;
  a.array(0, &n);
  const int32_t* idx = a.i32(0, n);
  const int64_t depth = a.integer(2);
  float* out = a.f32(1, n * depth);
  const float on = static_cast<float>(a.num(3)), off = static_cast<float>(a.num(4));
  if (a.failed) return nullptr;
  rm::oneHot(idx, out, n, depth, on, off);
  return undefined(env);
}

// argMax(x, out, outer, inner)
napi_value ArgMax(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int64_t outer = a.integer(2), inner = a.integer(3);
  const float* x = a.f32(0, outer * inner);
  int32_t* out = a.i32(1, outer);
  if (!a.failed && inner < 1) a.fail("argMax needs a non-empty axis");
  if (a.failed) return nullptr;
  rm::argMax(x, out, outer, inner);
  return undefined(env);
}

// segmentSum(x, ids, out, rows, inner, numSegments)
napi_value SegmentSum(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int64_t rows = a.integer(3), inner = a.integer(4), segs = a.integer(5);
  const float* x = a.f32(0, rows * inner);
  const int32_t* ids = a.i32(1, rows);
  float* out = a.f32(2, segs * inner);
  if (a.failed) return nullptr;
  rm::segmentSum(x, ids, out, rows, inner, segs);
  return undefined(env);
}

// adamw(p, m, v, g, b1, b2, eps, decay, stepSize, sqrtBc2, gradScale)
napi_value AdamW(napi_env env, napi_callback_info info) {
  Args a(env, info);
  int64_t n = 0;
  a.array(0, &n);
  float* p = a.f32(0, n);
  float* m = a.f32(1, n);
  float* v = a.f32(2, n);
  const float* g = a.f32(3, n);
  float f[7];
  for (int i = 0; i < 7; i++) f[i] = static_cast<float>(a.num(4 + i));
  if (a.failed) return nullptr;
  rm::adamw(p, m, v, g, n, f[0], f[1], f[2], f[3], f[4], f[5], f[6]);
  return undefined(env);
}

napi_value Threads(napi_env env, napi_callback_info info) {
  Args a(env, info);
  if (a.argc > 0) {
    const int64_t n = a.integer(0);
    if (a.failed) return nullptr;
    if (n < 1) {
      a.fail("threads must be at least 1");
      return nullptr;
    }
    rm::setThreads(static_cast<int>(n));
  }
  return number(env, rm::threads());
}

// gemm() -> the library in use; gemm(name) switches first (see kernels.h).
napi_value Gemm(napi_env env, napi_callback_info info) {
  Args a(env, info);
  if (a.argc > 0) {
    size_t len = 0;
    char name[64];
    if (napi_get_value_string_utf8(env, a.argv[0], name, sizeof(name), &len) != napi_ok) {
      a.fail("gemm takes a string: openblas, bundled, bundled/avx512, bundled/avx2 or bundled/scalar");
      return nullptr;
    }
    if (!rm::setGemm(name)) {
      a.fail(std::string("GEMM \"") + name + "\" is not available in this build on this CPU (it has " + rm::gemm() +
             "); use openblas, bundled, bundled/avx512, bundled/avx2 or bundled/scalar");
      return nullptr;
    }
  }
  const std::string g = rm::gemm();
  napi_value r;
  napi_create_string_utf8(env, g.c_str(), g.size(), &r);
  return r;
}

// Keep freed memory mapped for reuse (glibc): big typed arrays are otherwise
// returned to the OS when freed and page-faulted back in on the next step.
napi_value KeepFreedMemory(napi_env env, napi_callback_info) {
  const bool ok = mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
  napi_value r;
  napi_get_boolean(env, ok, &r);
  return r;
}

// Give the free pages of every malloc arena back to the OS (glibc's malloc_trim): what keepFreedMemory holds for the
// next training step, and what other threads freed. True when some memory was released.
napi_value ReleaseFreeMemory(napi_env env, napi_callback_info) {
  const bool released = malloc_trim(0) == 1;
  napi_value r;
  napi_get_boolean(env, released, &r);
  return r;
}

napi_value Init(napi_env env, napi_value exports) {
  rm::setThreads(rm::threads());
  const napi_property_descriptor fns[] = {
      {"matmul", nullptr, Matmul, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"binary", nullptr, Binary, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"unary", nullptr, Unary, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"scaledMaskedSoftmax", nullptr, ScaledMaskedSoftmax, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"attention", nullptr, Attention, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"scaledSoftmaxGrad", nullptr, ScaledSoftmaxGrad, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"addLayerNorm", nullptr, AddLayerNorm, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"layerNormGrad", nullptr, LayerNormGrad, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"gelu", nullptr, Gelu, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"geluGrad", nullptr, GeluGrad, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"clip", nullptr, Clip, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"reduce", nullptr, Reduce, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"softmax", nullptr, Softmax, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"logSumExpRows", nullptr, LogSumExpRows, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"softmaxMinusOneHot", nullptr, SoftmaxMinusOneHot, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"transpose", nullptr, Transpose, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"gather", nullptr, Gather, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"slice", nullptr, Slice, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"place", nullptr, Place, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"fill4", nullptr, Fill4, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"oneHot", nullptr, OneHot, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"argMax", nullptr, ArgMax, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"segmentSum", nullptr, SegmentSum, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"adamw", nullptr, AdamW, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"gemm", nullptr, Gemm, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"threads", nullptr, Threads, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"keepFreedMemory", nullptr, KeepFreedMemory, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"releaseFreeMemory", nullptr, ReleaseFreeMemory, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof(fns) / sizeof(fns[0]), fns);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
