/*! tidarc device harness: the GPU twin of runtime/emu/emu_main.cpp. Same options, same input
    and output files, same JSON lines on stdout, so the very checks that run a variant on the
    emulator (src/emulate/) run it on a GPU. Built per variant by nvcc with the variant's
    generated .cu included: -DTIDARC_VARIANT_SOURCE=\"path/to/<variant>.cu\"
    -DTIDARC_EMU_KERNEL=<symbol> -DTIDARC_EMU_COMBINE=<symbol>_combine. Also prints the
    kernel time (CUDA events) of the launch. */
#include <cuda_runtime.h>

#include "harness_args.h"

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

void* device_copy(const void* host, size_t bytes, const char* what) {
  void* d = nullptr;
  check(cudaMalloc(&d, bytes ? bytes : 16), what);
  if (host && bytes) check(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice), what);
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  const tidarc_harness::Args h = tidarc_harness::parse(argc, argv, "tidarc-gpu");
  const long batch = h.batch, capacity = h.capacity, splits = h.splits, steps = h.steps, qheads = h.qheads, kvheads = h.kvheads,
             dim = h.dim, row_tiles = h.row_tiles, threads = h.threads, smem = h.smem;
  const std::vector<int32_t>& prefix = h.prefix;
  const std::string &in_path = h.in_path, &out_path = h.out_path;

  const size_t q_bytes = batch * steps * qheads * dim * 2, cache_bytes = batch * kvheads * capacity * dim * 2, step_bytes = batch * steps * kvheads * dim * 2;
  const size_t rows = batch * steps * qheads;
  std::vector<unsigned char> host(q_bytes + 2 * cache_bytes + 2 * step_bytes);
  FILE* in = std::fopen(in_path.c_str(), "rb");
  if (!in || std::fread(host.data(), 1, host.size(), in) != host.size()) tidarc_harness::usage("tidarc-gpu", ("cannot read " + in_path).c_str());
  std::fclose(in);
  const unsigned char* p = host.data();
  TidarcAttentionArgs args{};
  args.q = device_copy(p, q_bytes, "q");
  args.k_cache = device_copy(p += q_bytes, cache_bytes, "k_cache");
  args.v_cache = device_copy(p += cache_bytes, cache_bytes, "v_cache");
  args.k_step = device_copy(p += cache_bytes, step_bytes, "k_step");
  args.v_step = device_copy(p += step_bytes, step_bytes, "v_step");
  args.prefix_len = static_cast<const int32_t*>(device_copy(prefix.data(), batch * 4, "prefix_len"));
  args.o = device_copy(nullptr, rows * dim * 2, "o");
  args.lse = static_cast<float*>(device_copy(nullptr, rows * 4, "lse"));
  args.workspace = splits > 1 ? static_cast<float*>(device_copy(nullptr, splits * rows * (dim + 1) * 4, "workspace")) : nullptr;
  // Poison every output: an element the kernels never write stays NaN.
  check(cudaMemset(args.o, 0xff, rows * dim * 2), "poison o");
  check(cudaMemset(args.lse, 0xff, rows * 4), "poison lse");
  args.batch = static_cast<int32_t>(batch);
  args.cache_capacity = static_cast<int32_t>(capacity);
  args.num_splits = static_cast<int32_t>(splits);

  check(cudaFuncSetAttribute(TIDARC_EMU_KERNEL, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)), "set dynamic shared memory");
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "event");
  check(cudaEventCreate(&stop), "event");
  check(cudaEventRecord(start), "event");
  TIDARC_EMU_KERNEL<<<dim3(row_tiles, batch * kvheads, splits), dim3(threads), smem>>>(args);
  check(cudaGetLastError(), "launch");
  if (splits > 1) {
    TIDARC_EMU_COMBINE<<<dim3((rows + 3) / 4), dim3(128)>>>(args);
    check(cudaGetLastError(), "launch combine");
  }
  check(cudaEventRecord(stop), "event");
  check(cudaDeviceSynchronize(), "kernel");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, start, stop), "event time");

  std::vector<unsigned char> out(rows * dim * 2 + rows * 4);
  check(cudaMemcpy(out.data(), args.o, rows * dim * 2, cudaMemcpyDeviceToHost), "copy o");
  check(cudaMemcpy(out.data() + rows * dim * 2, args.lse, rows * 4, cudaMemcpyDeviceToHost), "copy lse");
  FILE* f = std::fopen(out_path.c_str(), "wb");
  if (!f) tidarc_harness::usage("tidarc-gpu", ("cannot write " + out_path).c_str());
  std::fwrite(out.data(), 1, out.size(), f);
  std::fclose(f);
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("{\"timing\":{\"device\":\"%s\",\"ms\":%.6f}}\n", prop.name, ms);
  std::printf("{\"done\":true,\"completed\":true}\n");
  return 0;
}
