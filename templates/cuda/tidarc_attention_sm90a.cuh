/*! tidarc fused step attention, sm_90a (the Hopper path of the compute-bound variants: k = 16,
    the prefill chunk). Same work split, schedule, ABI contract and outputs as
    tidarc_attention.cuh's attention_tile_kernel: one CTA owns kTileM packed rows of one
    (sequence, KV head, split), walks its share of the cached prefix, then (last split only) the
    in-step key tiles the compiler found non-empty; full tiles skip the predicate, partial tiles
    evaluate it; with splits > 1 the next row group's CTAs merge (merge_split_slice).

    What differs is how a K/V tile reaches the tensor cores:
    - one producer warp (the last warp) fills a kStages ring of K/V tiles guarded by mbarriers
      (full[s]: the tile landed, 32 arrivals, one per producer lane, plus the TMA bytes; empty[s]:
      every consumer warpgroup retired its wgmmas on it). Prefix tiles whose every key is valid
      come by TMA (cp.async.bulk.tensor.3d through the KV cache's tensor maps, 128B swizzle,
      64 head-dim columns a box). Tiles with rows past the valid keys (the prefix's tail tile,
      every in-step tile) come by cp.async into the same swizzled layout, zero-filled past
      the valid keys, then fence.proxy.async: TMA cannot zero rows inside the tensor, and the
      unused cache slots past prefix_len may hold anything, NaN included (0 * NaN in P V is
      NaN); the step buffer [b][steps][kvh][D] is strided per token, its tiles are few
      (ceil(n / tileN) per row tile, against L / tileN prefix tiles) and they need the same zero fill.
    - kConsumers warpgroups of 64 rows each: S = Q K^T by wgmma with Q (loaded once, swizzled
      into shared memory) and the K tile both K-major from shared memory; the online softmax on
      the accumulator fragments (a warp's 16 rows, the mma.m16n8 C layout, so it runs the sm_80
      kernel's own softmax_max, softmax_exp, p_fragment and store_rows); O += P V by wgmma with P
      from registers (the accumulators packed to 16 bits are the A fragments) and V as B, MN-major (the transpose flag). The softmax of
      tile i overlaps the P V wgmma of tile i - 1 (FA3's intra-warpgroup pipelining), and with
      two consumers they take turns issuing their wgmmas (FA3's ping-pong: named barriers), so
      one warpgroup's softmax runs while the other's wgmmas keep the tensor cores busy.
    Config (<variant>.sm90a.cu) adds kConsumers, kPingPong and kStages to the sm_80 Config's fields. */
#pragma once
#include "tidarc_attention.cuh"
#include "tidarc_attention_sm90a_abi.h"
#include "tidarc_hopper.cuh"
#include <type_traits>  // std::true_type: the peeled first tile

namespace tidarc {

/** Shared memory of a config: 1024 bytes of alignment slack (the 128B swizzle pattern), Q of every
 *  consumer, the ring of K and V tiles, the full and empty mbarriers. Each 64-column slice of a
 *  tile (a TMA box) is rows of 128 bytes, 8-row groups 1024 bytes apart. */
template <class C> struct AttentionSm90aShape {
  static constexpr int kSlices = C::kHeadDim / 64;                  // 64-column slices of a row
  static constexpr uint32_t kSliceBytes = C::kTileN * 128;          // one slice of a K or V tile
  static constexpr uint32_t kTileBytes = kSlices * kSliceBytes;     // a K (or V) tile
  static constexpr uint32_t kStageBytes = 2 * kTileBytes;           // K, then V
  static constexpr uint32_t kQSliceBytes = 64 * 128;                // one slice of a consumer's 64 Q rows
  static constexpr uint32_t kQBytes = C::kConsumers * kSlices * kQSliceBytes;
  static constexpr uint32_t kSmem = 1024 + kQBytes + C::kStages * kStageBytes + 2 * C::kStages * 8;
  static_assert(C::kHeadDim == 64 || C::kHeadDim == 128, "head dim 64 or 128: whole 128B swizzle rows, O in at most 64 registers");
  static_assert(C::kTileN % 16 == 0 && C::kTileN <= 256, "a key tile is whole k16 steps of P V and one wgmma N");
  static_assert(C::kTileM == 64 * C::kConsumers && C::kThreads == 128 * C::kConsumers + 32, "consumer warpgroups of 64 rows, then the producer warp");
  static_assert(C::kStages >= 2, "the ring needs two stages");
  static_assert(!C::kPingPong || C::kConsumers == 2, "ping-pong takes turns between two consumer warpgroups");
};

/** 16 bytes as four words (a 16-byte aligned global load, bits unchanged). */
struct alignas(16) Words4 {
  uint32_t x, y, z, w;
};

/** Byte offset of 16-byte chunk `chunk` (8 columns) of row `row` in a tile of 64-column slices of
 *  `slice_bytes`, 128B-swizzled as TMA writes it (chunk c of line l at c ^ (l mod 8)). */
__device__ __forceinline__ uint32_t swizzled_chunk(int row, int chunk, uint32_t slice_bytes) {
  return (chunk / 8) * slice_bytes + row * 128 + (((chunk % 8) ^ (row % 8)) * 16);
}

// Q of every consumer, once: packed row r of the row tile is token r / G, query head
// kvh * G + r % G; rows past kRows are zero. Every thread of the CTA copies, then fences its
// stores for the async proxy (wgmma reads them); the caller's __syncthreads publishes them.
template <class C>
__device__ __forceinline__ void load_q_sm90a(const TidarcAttentionArgs& a, unsigned char* sq, int b, int kvh, int row_tile) {
  using S = AttentionSm90aShape<C>;
  constexpr int kChunks = C::kHeadDim / 8;
  for (int c = threadIdx.x; c < C::kTileM * kChunks; c += C::kThreads) {
    const int i = c / kChunks, chunk = c % kChunks;
    const int r = row_tile * C::kTileM + i;
    Words4 x{0, 0, 0, 0};
    if (r < C::kRows) {
      const size_t off = ((static_cast<size_t>(b) * C::kSteps + r / C::kGroup) * C::kQHeads + kvh * C::kGroup + r % C::kGroup) * C::kHeadDim + chunk * 8;
      x = *reinterpret_cast<const Words4*>(static_cast<const typename C::T*>(a.q) + off);
    }
    unsigned char* mine = sq + (i / 64) * S::kSlices * S::kQSliceBytes;  // consumer i / 64's Q
    st_shared_16(mine + swizzled_chunk(i % 64, chunk, S::kQSliceBytes), x.x, x.y, x.z, x.w);
  }
  fence_proxy_async();
}

// The producer warp: tile i of this CTA into stage i % kStages once every consumer released it.
template <class C>
__device__ __forceinline__ void produce_kv_sm90a(const TidarcAttentionSm90aArgs& args, unsigned char* ring, uint64_t* full, uint64_t* empty, int b,
                                                 int kvh, const KeyShare& keys, int row_tile) {
  using S = AttentionSm90aShape<C>;
  using T = typename C::T;
  constexpr int kChunks = C::kHeadDim / 8;
  const int lane = threadIdx.x % 32;
  const auto* kmap = reinterpret_cast<const TensorMap*>(&args.k_cache);
  const auto* vmap = reinterpret_cast<const TensorMap*>(&args.v_cache);
  for (int i = 0; i < keys.num_tiles; ++i) {
    const int s = i % C::kStages;
    if (i >= C::kStages) mbarrier_wait(&empty[s], (i / C::kStages - 1) & 1);  // every consumer retired its reads of the stage
    const TileRef<T> tile = describe_tile<C>(args.a, b, kvh, keys, row_tile, i);
    unsigned char* sk = ring + s * S::kStageBytes;
    unsigned char* sv = sk + S::kTileBytes;
    if (tile.mode == kPrefixFull) {
      if (lane == 0) {
        mbarrier_arrive_expect_tx(&full[s], S::kStageBytes);
        const int plane = b * C::kKvHeads + kvh;
        for (int h = 0; h < S::kSlices; ++h) {
          tma_load_3d(sk + h * S::kSliceBytes, kmap, h * 64, tile.key0, plane, &full[s]);
          tma_load_3d(sv + h * S::kSliceBytes, vmap, h * 64, tile.key0, plane, &full[s]);
        }
      } else {
        mbarrier_arrive(&full[s]);
      }
      continue;
    }
    // cp.async, so every copy of the tile is in flight at once (plain loads and stores were one
    // global round trip per 16 bytes a lane: 64 a tile at head dim 128); a row past the valid keys
    // is zero-filled (src-size 0) from the tile's first row, a readable address.
#pragma unroll 4
    for (int c = lane; c < C::kTileN * kChunks; c += 32) {
      const int row = c / kChunks, chunk = c % kChunks;
      const bool ok = row < tile.valid;
      const uint32_t off = swizzled_chunk(row, chunk, S::kSliceBytes);
      cp_async_16(sk + off, ok ? tile.k + row * tile.stride + chunk * 8 : tile.k, ok);
      cp_async_16(sv + off, ok ? tile.v + row * tile.stride + chunk * 8 : tile.v, ok);
    }
    cp_async_commit();
    cp_async_wait<0>();
    fence_proxy_async();  // these generic-proxy writes before the consumers' wgmma reads them
    mbarrier_arrive(&full[s]);
  }
}

template <class C>
__device__ __forceinline__ void attention_sm90a_kernel(const TidarcAttentionSm90aArgs& args, const SplitWork& w) {
  using T = typename C::T;
  using S = AttentionSm90aShape<C>;
  constexpr int D = C::kHeadDim;
  constexpr int NT = C::kTileN;
  const TidarcAttentionArgs& a = args.a;
  extern __shared__ __align__(16) unsigned char smem_raw[];  // aligned to 1024 below (tidarc_attention.cuh declares it 16)
  unsigned char* sq = smem_raw + ((1024 - smem_addr(smem_raw) % 1024) % 1024);
  unsigned char* ring = sq + S::kQBytes;
  uint64_t* full = reinterpret_cast<uint64_t*>(ring + C::kStages * S::kStageBytes);
  uint64_t* empty = full + C::kStages;

  // The CTA's item, from split_work in shared memory (blockIdx, or the dynamic id's item), re-read
  // at each use. What it costs (ptxas nvcc 13.0 sm_90a, Qwen3-8B head dim 128, k = 16 / prefill):
  // 160 / 152 registers, against 138 / 138 when this kernel read blockIdx and ran unconditionally
  // (d2be057). The cause is that ptxas cannot prove these values, or the caller's `compute item
  // or merge-only` branch on the drawn id, warp-uniform: both are loads from memory. Measured one
  // at a time: blockIdx values behind the id branch 156 / 154; blockIdx values, split_work and the
  // merge but no branch 138 / 138 (so neither the atomicAdd nor the merge code costs anything);
  // a branch on blockIdx and a kernel parameter instead 138. Not recovered by: the values and the
  // branch condition broadcast by __shfl_sync or __reduce_max_sync (158 / 156), the branch on
  // __syncthreads_or or __all_sync (156 / 154), plain int copies (164 / 162), the merge-only CTAs
  // returning before the compute instead of branching around it (156), the compute item as a
  // __noinline__ function (146 / 144 with blockIdx values, 162 / 160 with these), -maxrregcount
  // (ignored for this kernel). The dynamic id is what keeps the merge deadlock-free (a CTA waits
  // only on lower ids), so the values cannot come from blockIdx. The rise is harmless as long as
  // it stays under 224: the occupancy is 1 CTA an SM by shared memory (132144 bytes a CTA at
  // k = 16) and by __launch_bounds__(threads, 1), which allows 65536 / 288 = 224 registers; no spills.
  const volatile int& row_tile = w.row_tile;
  const volatile int& b = w.b;
  const volatile int& kvh = w.kvh;
  const volatile int& split = w.split;
  const volatile int& num_splits = w.num_splits;

  const KeyShare keys = key_share<C>(a, b, row_tile, split, num_splits);  // attention_tile_kernel's tiles
  const int num_tiles = keys.num_tiles;

  if (threadIdx.x == 0) {
    for (int s = 0; s < C::kStages; ++s) mbarrier_init(&full[s], 32), mbarrier_init(&empty[s], C::kConsumers);
    fence_barrier_init();
  }
  load_q_sm90a<C>(a, sq, b, kvh, row_tile);
  __syncthreads();  // the barriers are initialised and Q is in shared memory

  const int warp = warp_uniform(threadIdx.x / 32);  // a uniform role branch: no wgmma below it on a "divergent path"
  if (warp == 4 * C::kConsumers) {
    produce_kv_sm90a<C>(args, ring, full, empty, b, kvh, keys, row_tile);
    return;  // the caller's split merge has barriers every thread reaches
  }

  const int group = warp / 4;  // consumer warpgroup: rows 64 group .. of the tile (uniform, as warp)
  const int t = threadIdx.x % 128;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;   // fragment row group
  const int row0 = row_tile * C::kTileM + 64 * group + 16 * (t / 32);  // this warp's first row
  int row_token[2];
  for (int h = 0; h < 2; ++h) row_token[h] = min((row0 + g + 8 * h) / C::kGroup, C::kSteps - 1);  // padding rows borrow a real token; never written

  const unsigned char* my_q = sq + group * S::kSlices * S::kQSliceBytes;
  // K-major 128B-swizzled operands: 8-row groups 1024 bytes apart (SBO); the kk-th 16 columns are
  // slice kk / 4, 32 (kk % 4) bytes in (encoded >> 4: 2 per step).
  const uint64_t desc_q = smem_desc(my_q, Swizzle::b128, 16, 1024);
  float o[D / 2];
#pragma unroll
  for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY};  // running max of scaled scores (log2 domain)
  float row_sum[2] = {0.f, 0.f};              // this thread's partial sums; reduced at the end

  // Pipelined as FA3's intra-warpgroup overlap: while the softmax of tile i runs on the CUDA
  // cores, the tensor cores run O += P V of tile i - 1. Per tile: issue S_i = Q K_i, then P_{i-1}
  // V_{i-1}; wait for S_i only (wgmma.wait_group 1: groups retire in commit order); the softmax
  // of S_i (its row max, P in place, the sums; o is not touched: a wgmma writes it); then wait for
  // P V, release the stage of tile i - 1, rescale o to the new max and pack P_i. P_{i-1}'s
  // registers stay untouched while their wgmma runs (P_i is packed only after it retired).
  // Tile 0 is peeled (kPrev false: no P V before it) rather than guarded by `if (i > 0)`: a wgmma
  // on a path ptxas cannot prove uniform makes it serialize EVERY wgmma of the kernel (C7520,
  // "WG.AR in divergent path"), each waiting for the one before, which undoes the overlap.
  // Ping-pong (two consumers; FA3's inter-warpgroup overlap): a warpgroup issues tile i's wgmmas
  // only in its turn, then hands the turn over, so the tensor cores run one warpgroup's S and P V
  // while the other's softmax runs on the CUDA cores. Named barrier kTurnBarrier + w, 256
  // threads, is "warpgroup w's turn": w's bar.sync and the other's bar.arrive. Warpgroup 0 takes
  // its first turn unasked and warpgroup 1 hands over no turn after its last tile, so every phase
  // gets its 256 arrivals and none is left half-arrived at the end. The last tile's P V (after the
  // loop) is not in a turn: nothing of the other warpgroup's is left to overlap with it.
  // The ids are immediates, one call a warpgroup: from an id computed from `group` ptxas could not
  // tell which barriers the kernel uses and reserved all 16.
  constexpr uint32_t kTurnBarrier = 1;  // ids 1 and 2; 0 is __syncthreads' (the split merge's)
  auto take_turn = [&](int i) {
    if constexpr (C::kPingPong) {
      if (group == 1) named_barrier_sync<kTurnBarrier + 1, 256>();
      else if (i > 0) named_barrier_sync<kTurnBarrier, 256>();
    }
  };
  auto pass_turn = [&](int i) {
    if constexpr (C::kPingPong) {
      if (group == 0) named_barrier_arrive<kTurnBarrier + 1, 256>();
      else if (i + 1 < num_tiles) named_barrier_arrive<kTurnBarrier, 256>();
    }
  };
  float sacc[NT / 2];
  uint32_t pa[NT / 16][4];  // P as the A fragments of P V, 16 keys each
  auto consume_tile = [&](int i, auto has_prev) {
    constexpr bool kPrev = decltype(has_prev)::value;
    const int s = i % C::kStages;
    mbarrier_wait(&full[s], (i / C::kStages) & 1);
    const TileRef<T> tile = describe_tile<C>(a, b, kvh, keys, row_tile, i);
    const uint64_t desc_k = smem_desc(ring + s * S::kStageBytes, Swizzle::b128, 16, 1024);
    const int prev = (i + C::kStages - 1) % C::kStages;  // the stage of tile i - 1

    // ---- S = Q K^T: 64 rows x NT keys per warpgroup; then P_{i-1} V_{i-1} behind it ----------
    take_turn(i);
    wgmma_fence_operand(sacc), wgmma_fence_operand(o);
    wgmma_fence();  // sacc was read, o rescaled, since the last wgmma
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const uint32_t step = (kk / 4) * (S::kQSliceBytes >> 4) + 2 * (kk % 4);
      const uint32_t kstep = (kk / 4) * (S::kSliceBytes >> 4) + 2 * (kk % 4);
      wgmma_ss<T, NT, false, false>(sacc, desc_q + step, desc_k + kstep, kk > 0);
    }
    wgmma_commit();
    if constexpr (kPrev) {
      // V is B of P V with keys as its K: MN-major (head dim contiguous); the next 64 columns are a
      // slice further (LBO), the next 8 keys 1024 bytes (SBO), the kk-th 16 keys 2048 bytes (>> 4: 128).
      const uint64_t desc_v_prev = smem_desc(ring + prev * S::kStageBytes + S::kTileBytes, Swizzle::b128, S::kSliceBytes, 1024);
#pragma unroll
      for (int kk = 0; kk < NT / 16; ++kk) wgmma_rs<T, D, true>(o, pa[kk], desc_v_prev + kk * (2048 >> 4), true);
      wgmma_fence_operand(pa);  // the wgmma reads pa until it retires: keep it live, unmoved
      wgmma_commit();
      pass_turn(i);
      wgmma_wait<1>();  // S_i is in sacc; P V of tile i - 1 may still run
    } else {
      pass_turn(i);
      wgmma_wait<0>();
    }
    wgmma_fence_operand(sacc);

    // ---- mask (only tail and partial tiles), scale, online softmax (attention_tile_kernel's) --
    float scale_old[2], base[2];
    softmax_max<C>(as_fragments(sacc), tile, 0, row_token, row_max, row_sum, scale_old, base);
    softmax_exp(as_fragments(sacc), base, row_sum);

    if constexpr (kPrev) {
      wgmma_wait<0>();  // P V of tile i - 1 has retired: o is readable, its stage and pa are free
      wgmma_fence_operand(o), wgmma_fence_operand(pa);
      if (t == 0) mbarrier_arrive(&empty[prev]);
      rescale_rows(as_fragments(o), scale_old);
    }  // else o is still zero: nothing to rescale
#pragma unroll
    for (int kk = 0; kk < NT / 16; ++kk) p_fragment<T>(as_fragments(sacc), kk, pa[kk]);
  };
  if (num_tiles > 0) {
    consume_tile(0, std::false_type{});
    for (int i = 1; i < num_tiles; ++i) consume_tile(i, std::true_type{});
    // ---- O += P V of the last tile ------------------------------------------------------------
    const int last = (num_tiles - 1) % C::kStages;
    const uint64_t desc_v = smem_desc(ring + last * S::kStageBytes + S::kTileBytes, Swizzle::b128, S::kSliceBytes, 1024);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < NT / 16; ++kk) wgmma_rs<T, D, true>(o, pa[kk], desc_v + kk * (2048 >> 4), true);
    wgmma_fence_operand(pa);
    wgmma_commit();
    wgmma_wait<0>();  // o is final; nobody refills the last stage, but it is released like the others
    wgmma_fence_operand(o), wgmma_fence_operand(pa);
    if (t == 0) mbarrier_arrive(&empty[last]);
  }

  // ---- finish: normalise, write O (or the split's partial) and the log-sum-exp -------------
  reduce_row_sums(row_sum);
  store_rows<C>(a, b, kvh, row0 + g, as_fragments(o), row_max, row_sum, split, num_splits);
}

}  // namespace tidarc
