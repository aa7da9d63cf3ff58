/*! tidarc emulator: warp collectives. Every lane deposits its operands; the last lane to
    arrive computes what each lane gets (PTX ISA fragment layouts for mma.m16n8k16 and
    ldmatrix, xor lanes for shfl) and wakes the others. */
#include <cmath>
#include <cstring>

#include "emu_state.h"

namespace tidarc_emu {
namespace detail {

// ---- warp collectives -------------------------------------------------------------------

float to_float(MmaType type, uint16_t bits) {
  if (type == MmaType::bf16) return __bfloat162float(__nv_bfloat16{bits});
  return __half2float(__half{bits});
}

void execute_mma(Warp& w) {
  float A[16][16], B[16][8], C[16][8];
  auto lo = [&](uint32_t r) { return to_float(w.type, static_cast<uint16_t>(r & 0xffffu)); };
  auto hi = [&](uint32_t r) { return to_float(w.type, static_cast<uint16_t>(r >> 16)); };
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    const LaneIn& in = w.in[l];
    A[g][2 * t] = lo(in.a[0]), A[g][2 * t + 1] = hi(in.a[0]);
    A[g + 8][2 * t] = lo(in.a[1]), A[g + 8][2 * t + 1] = hi(in.a[1]);
    A[g][2 * t + 8] = lo(in.a[2]), A[g][2 * t + 9] = hi(in.a[2]);
    A[g + 8][2 * t + 8] = lo(in.a[3]), A[g + 8][2 * t + 9] = hi(in.a[3]);
    B[2 * t][g] = lo(in.b[0]), B[2 * t + 1][g] = hi(in.b[0]);
    B[2 * t + 8][g] = lo(in.b[1]), B[2 * t + 9][g] = hi(in.b[1]);
    C[g][2 * t] = in.c[0], C[g][2 * t + 1] = in.c[1];
    C[g + 8][2 * t] = in.c[2], C[g + 8][2 * t + 1] = in.c[3];
  }
  float D[16][8];
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n) {
      float acc = C[m][n];
      for (int k = 0; k < 16; ++k) acc = std::fma(A[m][k], B[k][n], acc);  // products are exact in fp32
      D[m][n] = acc;
    }
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    float* f = w.out[l].f;
    f[0] = D[g][2 * t], f[1] = D[g][2 * t + 1], f[2] = D[g + 8][2 * t], f[3] = D[g + 8][2 * t + 1];
  }
}

void execute_ldmatrix(Warp& w, int warp_index) {
  uint16_t M[4][8][8] = {};
  for (int i = 0; i < w.count; ++i) {
    for (int j = 0; j < 8; ++j) {
      const int lane = 8 * i + j;
      const int tid = warp_index * 32 + lane;
      const void* p = w.in[lane].ptr;
      size_t off = 0;
      const SharedKind kind = classify_shared(p, 16, &off);
      if (reinterpret_cast<uintptr_t>(p) % 16 != 0) {
        report("alignment", fmt("ldmatrix row address of lane %d is not 16-byte aligned (%p)", lane, p));
      } else if (kind == SharedKind::BeyondDynamic || kind == SharedKind::NotShared) {
        report("out-of-bounds", fmt("ldmatrix row address of lane %d %s", lane, shared_problem(kind, p).c_str()));
      } else {
        if (kind == SharedKind::Dynamic) shared_read(tid, off, 16, fmt("ldmatrix (lane %d, %s)", lane, thread_name(tid).c_str()).c_str());
        std::memcpy(M[i][j], p, 16);
      }
    }
  }
  for (int l = 0; l < w.size; ++l) {
    for (int i = 0; i < w.count; ++i) {
      uint16_t a, b;
      if (!w.trans) {
        a = M[i][l / 4][2 * (l % 4)], b = M[i][l / 4][2 * (l % 4) + 1];
      } else {
        a = M[i][2 * (l % 4)][l / 4], b = M[i][2 * (l % 4) + 1][l / 4];
      }
      w.out[l].r[i] = a | (static_cast<uint32_t>(b) << 16);
    }
  }
}

void execute(Warp& w, int warp_index) {
  switch (w.op) {
    case Op::Shfl:
      for (int l = 0; l < w.size; ++l) {
        const int src = l ^ w.count;
        w.out[l].f[0] = src < w.size ? w.in[src].f : w.in[l].f;
      }
      break;
    case Op::Ldmatrix:
      execute_ldmatrix(w, warp_index);
      break;
    case Op::Mma:
      if (w.size != 32) report("warp-divergence", "mma.sync needs all 32 lanes of the warp");
      else execute_mma(w);
      break;
  }
}

const char* op_name(Op op) { return op == Op::Shfl ? "shfl" : op == Op::Ldmatrix ? "ldmatrix" : "mma.sync"; }

/** Every lane deposits its input; the last to arrive computes all outputs and wakes the rest. */
const LaneOut& collective(Op op, const LaneIn& in, int count, bool trans, MmaType type, const char* site) {
  Thread& t = cur();
  Warp& w = L->warps[static_cast<size_t>(t.warp)];
  if (w.arrived == 0) {
    w.op = op, w.count = count, w.trans = trans, w.type = type, w.site = site;
  } else if (w.op != op || w.count != count || w.trans != trans || w.type != type) {
    report("warp-divergence", fmt("lane %d calls %s while other lanes of warp %d are in %s", t.lane, op_name(op), t.warp, op_name(w.op)));
  }
  w.in[t.lane] = in;
  if (++w.arrived == w.size) {
    execute(w, t.warp);
    w.arrived = 0;
    for (int l = 0; l < w.size; ++l) {
      Thread& other = L->threads[static_cast<size_t>(t.warp * 32 + l)];
      if (other.state == State::WaitWarp) other.state = State::Runnable;
    }
  } else {
    block_current(State::WaitWarp, site);
  }
  return w.out[t.lane];
}

}  // namespace detail

using namespace detail;

float shfl_xor_f32(float v, int lane_mask, const char* site) {
  LaneIn in{};
  in.f = v;
  return collective(Op::Shfl, in, lane_mask, false, MmaType::bf16, site).f[0];
}

void mma_m16n8k16(MmaType type, float d[4], const uint32_t a[4], const uint32_t b[2]) {
  LaneIn in{};
  std::memcpy(in.a, a, sizeof in.a);
  std::memcpy(in.b, b, sizeof in.b);
  std::memcpy(in.c, d, sizeof in.c);
  const LaneOut& out = collective(Op::Mma, in, 0, false, type, "mma.sync");
  std::memcpy(d, out.f, sizeof out.f);
}

void ldmatrix(int count, bool trans, uint32_t* r, const void* row) {
  LaneIn in{};
  in.ptr = row;
  const LaneOut& out = collective(Op::Ldmatrix, in, count, trans, MmaType::bf16, "ldmatrix");
  for (int i = 0; i < count; ++i) r[i] = out.r[i];
}

float fast_exp2(float x) { return std::exp2(x); }

}  // namespace tidarc_emu
