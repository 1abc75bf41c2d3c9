{
  # The native CPU kernels: OpenMP for the element-wise ones; for matrix
  # products either the bundled GEMM (src/gemm.cc, needs only a C++ compiler)
  # or OpenBLAS (Debian's libopenblas-dev, found by pkg-config), as
  # scripts/build-native.js chooses: node-gyp rebuild -- -Dblas=openblas.
  # march: the CPU the code is compiled for; native by default, x86-64-v3
  # (AVX2 + FMA) for a bundle that must run on other machines.
  "variables": { "blas%": "bundled", "march%": "native" },
  "targets": [
    {
      "target_name": "retromae_native",
      "sources": ["src/addon.cc", "src/kernels.cc", "src/gemm.cc"],
      "cflags_cc": ["-O3", "-march=<(march)", "-fopenmp", "-std=c++17", "-fno-exceptions"],
      "cflags_cc!": ["-fno-rtti"],
      "ldflags": ["-fopenmp"],
      "defines": ["NAPI_VERSION=8"],
      "conditions": [
        ["blas=='openblas'", {
          "cflags_cc": ["<!@(pkg-config --cflags openblas)"],
          "defines": ["RM_OPENBLAS"],
          "libraries": ["<!@(pkg-config --libs openblas)", "-Wl,-rpath,<!(pkg-config --variable=libdir openblas)"]
        }]
      ]
    }
  ]
}
