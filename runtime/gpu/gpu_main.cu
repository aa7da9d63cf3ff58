/*! tidarc device harness: the GPU twin of runtime/emu/emu_main.cpp. Same options, same input
    and output files, same JSON lines on stdout, so the very checks that run a variant on the
    emulator (src/emulate/) run it on a GPU. Built per variant by nvcc with the variant's
    generated .cu included: -DTIDARC_VARIANT_SOURCE=\"path/to/<variant>.cu\"
    -DTIDARC_EMU_KERNEL=<symbol>. Also prints the kernel time (CUDA events) of the launch
    (one launch: with splits > 1 the last CTA of each row group merges the partials).
    --block-order is the emulator's; a GPU schedules its CTAs itself. Its options and files are
    src/emulate/harness-protocol.ts's (harness_args.h); the arrays are tidarc_attention_args.h's. */
#include <cuda_runtime.h>

#include "harness_args.h"
#include "tidarc_attention_args.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include TIDARC_VARIANT_SOURCE

#define TIDARC_EMU_STR2(x) #x
#define TIDARC_EMU_STR(x) TIDARC_EMU_STR2(x)

namespace {

// A CUDA error ends the run as a finding: the checks then report the variant as failed.
void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  std::printf("{\"finding\":\"cuda-error\",\"kernel\":\"%s\",\"block\":[0,0,0],\"thread\":[0,0,0],\"message\":\"%s: %s\"}\n",
              TIDARC_EMU_STR(TIDARC_EMU_KERNEL), what, cudaGetErrorString(e));
  std::printf("{\"done\":true,\"completed\":false}\n");
  std::exit(0);
}

// One array in device memory: an input read from the file; the split counters zero (as every
// host passes them); anything else poisoned, so that an element the kernel never writes stays NaN.
void* fill(FILE* in, const char* name, size_t bytes, int role) {
  void* d = nullptr;
  check(cudaMalloc(&d, bytes ? bytes : 16), name);
  if (role == TIDARC_ARRAY_IN || role == TIDARC_ARRAY_CACHE) {
    std::vector<unsigned char> host(bytes);
    if (std::fread(host.data(), 1, bytes, in) != bytes) tidarc_harness::usage("tidarc-gpu", std::string("input file too short reading ") + name);
    if (bytes) check(cudaMemcpy(d, host.data(), bytes, cudaMemcpyHostToDevice), name);
  } else {
    check(cudaMemset(d, role == TIDARC_ARRAY_COUNTERS ? 0 : 0xff, bytes), name);
  }
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  const tidarc_harness::Args h = tidarc_harness::parse(argc, argv, "tidarc-gpu");
  const TidarcAttentionDims d = tidarc_harness::dims(h);
  TidarcAttentionArgs args{};
  FILE* in = std::fopen(h.in_path.c_str(), "rb");
  if (!in) tidarc_harness::usage("tidarc-gpu", "cannot open " + h.in_path);
#define TIDARC_FILL(field, js, type, role) \
  if ((role != TIDARC_ARRAY_SCRATCH && role != TIDARC_ARRAY_COUNTERS) || d.num_splits > 1) \
    args.field = static_cast<type*>(fill(in, #field, tidarc_attention_##field##_elements(&d) * sizeof(type), role));
  TIDARC_ATTENTION_ARRAYS(TIDARC_FILL)
#undef TIDARC_FILL
  std::fclose(in);
  tidarc_attention_set_sizes(&args, &d);

  check(cudaFuncSetAttribute(TIDARC_EMU_KERNEL, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(h.smem)), "set dynamic shared memory");
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "event");
  check(cudaEventCreate(&stop), "event");
  check(cudaEventRecord(start), "event");
  unsigned grid[3];
  tidarc_attention_grid(h.row_tiles, d.batch, d.kv_heads, d.num_splits, grid);  // the one rule of every launcher
  TIDARC_EMU_KERNEL<<<dim3(grid[0], grid[1], grid[2]), dim3(h.threads), h.smem>>>(args);
  check(cudaGetLastError(), "launch");
  check(cudaEventRecord(stop), "event");
  check(cudaDeviceSynchronize(), "kernel");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, start, stop), "event time");

  FILE* f = std::fopen(h.out_path.c_str(), "wb");
  if (!f) tidarc_harness::usage("tidarc-gpu", "cannot write " + h.out_path);
#define TIDARC_WRITE(field, js, type, role)                                                     \
  if (role == TIDARC_ARRAY_OUT) {                                                               \
    std::vector<type> host(tidarc_attention_##field##_elements(&d));                            \
    check(cudaMemcpy(host.data(), args.field, host.size() * sizeof(type), cudaMemcpyDeviceToHost), "copy " #field); \
    std::fwrite(host.data(), sizeof(type), host.size(), f);                                     \
  }
  TIDARC_ATTENTION_ARRAYS(TIDARC_WRITE)
#undef TIDARC_WRITE
  std::fclose(f);
  // The next launch (or graph replay) gets the counters as they are: each must be 0 again.
#define TIDARC_COUNTERS(field, js, type, role)                                                  \
  if (role == TIDARC_ARRAY_COUNTERS && args.field != nullptr) {                                 \
    std::vector<type> host(tidarc_attention_##field##_elements(&d));                            \
    check(cudaMemcpy(host.data(), args.field, host.size() * sizeof(type), cudaMemcpyDeviceToHost), "copy " #field); \
    for (size_t i = 0; i < host.size(); ++i)                                                    \
      if (host[i] != 0) {                                                                       \
        std::printf("{\"finding\":\"counter\",\"kernel\":\"%s\",\"block\":[0,0,0],\"thread\":[0,0,0],\"message\":\"" #field "[%zu] is %d after the launch; every launch must leave it 0\"}\n", \
                    TIDARC_EMU_STR(TIDARC_EMU_KERNEL), i, static_cast<int>(host[i]));                 \
        break;                                                                                  \
      }                                                                                         \
  }
  TIDARC_ATTENTION_ARRAYS(TIDARC_COUNTERS)
#undef TIDARC_COUNTERS
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("{\"timing\":{\"device\":\"%s\",\"ms\":%.6f}}\n", prop.name, ms);
  std::printf("{\"done\":true,\"completed\":true}\n");
  return 0;
}
