/*! tidarc emulator: global memory shared between the CTAs of one launch. Blocks run one after
    another, so an atomic is a plain read-modify-write here; what the emulator checks is the
    ordering a GPU needs (the "last CTA merges" pattern): a CTA may read a global word another
    CTA stored through st_global_* only if the writer __threadfence'd it before its CTA's
    atomicAdd, and the reader's CTA made an atomicAdd after that one (seeing the count). Any
    other such read is a "fence" finding: on a GPU it could see the word before it lands. */
#include <cstring>

#include "emu_state.h"

namespace tidarc_emu {
namespace detail {

uint32_t block_linear() {
  const uint3 b = L->block_idx;
  return b.x + L->grid.x * (b.y + L->grid.y * b.z);
}

namespace {

std::string block_name(uint32_t linear) {
  const uint32_t x = linear % L->grid.x, y = linear / L->grid.x % L->grid.y, z = linear / (L->grid.x * L->grid.y);
  return fmt("block (%u,%u,%u)", x, y, z);
}

bool in_buffer(const void* p, size_t n, const char* what) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  if (a % 4 != 0) {
    report("alignment", fmt("%s needs a 4-byte aligned address (%p)", what, p));
    return false;
  }
  if (!find_buffer(a, n)) {
    report("out-of-bounds", fmt("%s of %zu bytes outside every buffer: %s", what, n, describe_global(a).c_str()));
    return false;
  }
  return true;
}

}  // namespace
}  // namespace detail

using namespace detail;

void st_global(void* p, const void* v, size_t n) {
  Thread& t = cur();
  if (!in_buffer(p, n, "st.global")) return;
  const uint32_t block = block_linear();
  for (size_t i = 0; i < n; i += 4) {
    const auto w = reinterpret_cast<uintptr_t>(p) + i;
    L->global_writes[w] = GlobalWrite{block, static_cast<int16_t>(t.tid), false, 0};
    t.unfenced.push_back(w);
    L->block_writes.push_back(w);
  }
  std::memcpy(p, v, n);
}

void ld_global(void* dst, const void* p, size_t n) {
  cur();
  if (!in_buffer(p, n, "ld.global")) {
    std::memset(dst, 0xff, n);
    return;
  }
  const uint32_t block = block_linear();
  for (size_t i = 0; i < n; i += 4) {
    const auto it = L->global_writes.find(reinterpret_cast<uintptr_t>(p) + i);
    if (it == L->global_writes.end() || it->second.block == block) continue;  // an earlier launch's, or this CTA's (its barriers order it)
    const GlobalWrite& g = it->second;
    const std::string writer = fmt("%s %s", block_name(g.block).c_str(), thread_name(g.tid).c_str());
    if (g.release == 0) {
      report("fence", fmt("reads global %p that %s stored without a __threadfence before its CTA's atomicAdd: this CTA may see it before it lands", p, writer.c_str()));
      return;
    }
    if (L->block_atomic <= g.release) {
      report("fence", fmt("reads global %p that %s published, before an atomicAdd of this CTA saw that one", p, writer.c_str()));
      return;
    }
  }
  std::memcpy(dst, p, n);
}

void threadfence() {
  Thread& t = cur();
  const uint32_t block = block_linear();
  for (const uintptr_t w : t.unfenced) {
    GlobalWrite& g = L->global_writes[w];
    if (g.block == block && g.tid == t.tid) g.fenced = true;
  }
  t.unfenced.clear();
}

int atomic_add_i32(int* p, int v) {
  cur();
  if (!in_buffer(p, 4, "atomicAdd")) return 0;
  const int old = *p;
  *p = old + v;
  L->block_atomic = ++L->atomic_seq;
  // The block's fenced words are published by this atomic; unfenced ones are not, even if
  // fenced later (a later atomic of the block would publish them).
  const uint32_t block = block_linear();
  std::vector<uintptr_t> keep;
  for (const uintptr_t w : L->block_writes) {
    GlobalWrite& g = L->global_writes[w];
    if (g.block != block) continue;  // overwritten by another block since
    if (g.fenced) g.release = L->block_atomic;
    else keep.push_back(w);
  }
  L->block_writes.swap(keep);
  return old;
}

}  // namespace tidarc_emu
