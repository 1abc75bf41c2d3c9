{
  # The native CPU kernels: OpenBLAS (Debian's libopenblas-dev, pthread build,
  # found by pkg-config) for matrix products, OpenMP for the element-wise ones.
  "targets": [
    {
      "target_name": "retromae_native",
      "sources": ["src/addon.cc", "src/kernels.cc"],
      "cflags_cc": ["-O3", "-march=native", "-fopenmp", "-std=c++17", "-fno-exceptions",
                    "<!@(pkg-config --cflags openblas)"],
      "cflags_cc!": ["-fno-rtti"],
      "ldflags": ["-fopenmp"],
      "libraries": ["<!@(pkg-config --libs openblas)", "-Wl,-rpath,<!(pkg-config --variable=libdir openblas)"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
