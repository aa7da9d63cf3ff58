import type { AttentionInputs, AttentionOutputs, OpenOptions } from "tidarc/kernels";
/** The model these kernels were compiled for. */
export declare const model: {
    readonly name: "tiny";
    readonly family: "qwen3";
    readonly layers: 2;
    readonly hiddenSize: 256;
    readonly queryHeads: 4;
    readonly kvHeads: 2;
    readonly headDim: 64;
    readonly intermediateSize: 512;
    readonly vocabSize: 260;
    readonly ropeTheta: 10000;
    readonly rmsNormEps: 0.000001;
    readonly qkNorm: true;
    readonly tieEmbeddings: true;
    readonly dtype: "bf16";
    readonly maskTokenId: 259;
    readonly draftLengths: readonly [2, 4];
    readonly maxPositionEmbeddings: 512;
};
/** Per variant: mask, shapes, exported symbols and launch geometry (from manifest.json). */
export declare const variants: {
    readonly tidar_k2: {
        readonly name: "tidar_k2";
        readonly draft: 2;
        readonly steps: 6;
        readonly rows: 12;
        readonly mask: {
            readonly kind: "tidar-decode";
            readonly params: {
                readonly draft: 2;
            };
        };
        readonly shape: {
            readonly dtype: "bf16";
            readonly headDim: 64;
            readonly qHeads: 4;
            readonly kvHeads: 2;
        };
        readonly symbols: {
            readonly cuda: "tidarc_attn_tidar_k2_bf16_d64_q4_kv2";
            readonly cpu: "tidarc_cpu_attn_tidar_k2_bf16_d64_q4_kv2";
        };
        readonly launch: {
            readonly grid: readonly ["splits == 1 ? rowTiles : rowTiles * batch * kvHeads + 1", "splits == 1 ? batch * kvHeads : 1", "splits"];
            readonly rowTiles: 1;
            readonly block: 128;
            readonly dynamicSharedBytes: 36864;
        };
    };
    readonly tidar_k4: {
        readonly name: "tidar_k4";
        readonly draft: 4;
        readonly steps: 20;
        readonly rows: 40;
        readonly mask: {
            readonly kind: "tidar-decode";
            readonly params: {
                readonly draft: 4;
            };
        };
        readonly shape: {
            readonly dtype: "bf16";
            readonly headDim: 64;
            readonly qHeads: 4;
            readonly kvHeads: 2;
        };
        readonly symbols: {
            readonly cuda: "tidarc_attn_tidar_k4_bf16_d64_q4_kv2";
            readonly cpu: "tidarc_cpu_attn_tidar_k4_bf16_d64_q4_kv2";
        };
        readonly launch: {
            readonly grid: readonly ["splits == 1 ? rowTiles : rowTiles * batch * kvHeads + 1", "splits == 1 ? batch * kvHeads : 1", "splits"];
            readonly rowTiles: 1;
            readonly block: 96;
            readonly dynamicSharedBytes: 36864;
        };
    };
    readonly block_k2: {
        readonly name: "block_k2";
        readonly draft: 2;
        readonly steps: 2;
        readonly rows: 4;
        readonly mask: {
            readonly kind: "block-diffusion";
            readonly params: {
                readonly block: 2;
            };
        };
        readonly shape: {
            readonly dtype: "bf16";
            readonly headDim: 64;
            readonly qHeads: 4;
            readonly kvHeads: 2;
        };
        readonly symbols: {
            readonly cuda: "tidarc_attn_block_k2_bf16_d64_q4_kv2";
            readonly cpu: "tidarc_cpu_attn_block_k2_bf16_d64_q4_kv2";
        };
        readonly launch: {
            readonly grid: readonly ["splits == 1 ? rowTiles : rowTiles * batch * kvHeads + 1", "splits == 1 ? batch * kvHeads : 1", "splits"];
            readonly rowTiles: 1;
            readonly block: 128;
            readonly dynamicSharedBytes: 36864;
        };
    };
    readonly block_k4: {
        readonly name: "block_k4";
        readonly draft: 4;
        readonly steps: 4;
        readonly rows: 8;
        readonly mask: {
            readonly kind: "block-diffusion";
            readonly params: {
                readonly block: 4;
            };
        };
        readonly shape: {
            readonly dtype: "bf16";
            readonly headDim: 64;
            readonly qHeads: 4;
            readonly kvHeads: 2;
        };
        readonly symbols: {
            readonly cuda: "tidarc_attn_block_k4_bf16_d64_q4_kv2";
            readonly cpu: "tidarc_cpu_attn_block_k4_bf16_d64_q4_kv2";
        };
        readonly launch: {
            readonly grid: readonly ["splits == 1 ? rowTiles : rowTiles * batch * kvHeads + 1", "splits == 1 ? batch * kvHeads : 1", "splits"];
            readonly rowTiles: 1;
            readonly block: 128;
            readonly dynamicSharedBytes: 36864;
        };
    };
    readonly ar: {
        readonly name: "ar";
        readonly draft: null;
        readonly steps: 1;
        readonly rows: 2;
        readonly mask: {
            readonly kind: "causal";
            readonly params: {
                readonly length: 1;
            };
        };
        readonly shape: {
            readonly dtype: "bf16";
            readonly headDim: 64;
            readonly qHeads: 4;
            readonly kvHeads: 2;
        };
        readonly symbols: {
            readonly cuda: "tidarc_attn_ar_bf16_d64_q4_kv2";
            readonly cpu: "tidarc_cpu_attn_ar_bf16_d64_q4_kv2";
        };
        readonly launch: {
            readonly grid: readonly ["splits == 1 ? rowTiles : rowTiles * batch * kvHeads + 1", "splits == 1 ? batch * kvHeads : 1", "splits"];
            readonly rowTiles: 1;
            readonly block: 128;
            readonly dynamicSharedBytes: 36864;
        };
    };
    readonly prefill_c64: {
        readonly name: "prefill_c64";
        readonly draft: null;
        readonly steps: 64;
        readonly rows: 128;
        readonly mask: {
            readonly kind: "causal";
            readonly params: {
                readonly length: 64;
            };
        };
        readonly shape: {
            readonly dtype: "bf16";
            readonly headDim: 64;
            readonly qHeads: 4;
            readonly kvHeads: 2;
        };
        readonly symbols: {
            readonly cuda: "tidarc_attn_prefill_c64_bf16_d64_q4_kv2";
            readonly cpu: "tidarc_cpu_attn_prefill_c64_bf16_d64_q4_kv2";
        };
        readonly launch: {
            readonly grid: readonly ["splits == 1 ? rowTiles : rowTiles * batch * kvHeads + 1", "splits == 1 ? batch * kvHeads : 1", "splits"];
            readonly rowTiles: 1;
            readonly block: 128;
            readonly dynamicSharedBytes: 73728;
        };
    };
};
export type VariantName = keyof typeof variants;
/** Typed entry points of the attention kernels of model "tiny", one per variant. */
export interface TinyKernels {
    /** The backend that runs the kernels: "cpu" (the C++ library) or "cuda" (the fatbins on the GPU). */
    readonly backend: string;
    /**
     * TiDAR decode step, draft length 2: 6 in-step tokens (2 drafts + 2 blocks of 2 mask tokens).
     *
     * q, o: [batch, 6, 4, 64] bf16 bits (Uint16Array);
     * kCache, vCache: [batch, 2, cacheCapacity, 64]; kStep, vStep: [batch, 6, 2, 64];
     * lse: [batch, 6, 4] natural log. Tiles: 0 full, 1 partial, 0 empty in-step tiles skipped.
     */
    tidarK2(inputs: AttentionInputs): AttentionOutputs;
    /** TiDAR decode step, draft length 2: 6 in-step tokens (2 drafts + 2 blocks of 2 mask tokens), off the event loop. */
    tidarK2Async(inputs: AttentionInputs): Promise<AttentionOutputs>;
    /**
     * TiDAR decode step, draft length 4: 20 in-step tokens (4 drafts + 4 blocks of 4 mask tokens).
     *
     * q, o: [batch, 20, 4, 64] bf16 bits (Uint16Array);
     * kCache, vCache: [batch, 2, cacheCapacity, 64]; kStep, vStep: [batch, 20, 2, 64];
     * lse: [batch, 20, 4] natural log. Tiles: 0 full, 1 partial, 0 empty in-step tiles skipped.
     */
    tidarK4(inputs: AttentionInputs): AttentionOutputs;
    /** TiDAR decode step, draft length 4: 20 in-step tokens (4 drafts + 4 blocks of 4 mask tokens), off the event loop. */
    tidarK4Async(inputs: AttentionInputs): Promise<AttentionOutputs>;
    /**
     * prefill mask block: 2 mask tokens that see the prompt and each other.
     *
     * q, o: [batch, 2, 4, 64] bf16 bits (Uint16Array);
     * kCache, vCache: [batch, 2, cacheCapacity, 64]; kStep, vStep: [batch, 2, 2, 64];
     * lse: [batch, 2, 4] natural log. Tiles: 0 full, 1 partial, 0 empty in-step tiles skipped.
     */
    blockK2(inputs: AttentionInputs): AttentionOutputs;
    /** prefill mask block: 2 mask tokens that see the prompt and each other, off the event loop. */
    blockK2Async(inputs: AttentionInputs): Promise<AttentionOutputs>;
    /**
     * prefill mask block: 4 mask tokens that see the prompt and each other.
     *
     * q, o: [batch, 4, 4, 64] bf16 bits (Uint16Array);
     * kCache, vCache: [batch, 2, cacheCapacity, 64]; kStep, vStep: [batch, 4, 2, 64];
     * lse: [batch, 4, 4] natural log. Tiles: 0 full, 1 partial, 0 empty in-step tiles skipped.
     */
    blockK4(inputs: AttentionInputs): AttentionOutputs;
    /** prefill mask block: 4 mask tokens that see the prompt and each other, off the event loop. */
    blockK4Async(inputs: AttentionInputs): Promise<AttentionOutputs>;
    /**
     * AR decode step: 1 in-step token (the k = 0 case).
     *
     * q, o: [batch, 1, 4, 64] bf16 bits (Uint16Array);
     * kCache, vCache: [batch, 2, cacheCapacity, 64]; kStep, vStep: [batch, 1, 2, 64];
     * lse: [batch, 1, 4] natural log. Tiles: 0 full, 1 partial, 0 empty in-step tiles skipped.
     */
    ar(inputs: AttentionInputs): AttentionOutputs;
    /** AR decode step: 1 in-step token (the k = 0 case), off the event loop. */
    arAsync(inputs: AttentionInputs): Promise<AttentionOutputs>;
    /**
     * prefill chunk: 64 prompt tokens, causal among themselves, after the cached prompt so far.
     *
     * q, o: [batch, 64, 4, 64] bf16 bits (Uint16Array);
     * kCache, vCache: [batch, 2, cacheCapacity, 64]; kStep, vStep: [batch, 64, 2, 64];
     * lse: [batch, 64, 4] natural log. Tiles: 0 full, 1 partial, 0 empty in-step tiles skipped.
     */
    prefillC64(inputs: AttentionInputs): AttentionOutputs;
    /** prefill chunk: 64 prompt tokens, causal among themselves, after the cached prompt so far, off the event loop. */
    prefillC64Async(inputs: AttentionInputs): Promise<AttentionOutputs>;
    /** Releases the loaded kernel library. */
    close(): void;
}
/** Opens the kernels compiled next to this file (see manifest.json) on options.backend: "cpu", "cuda", or "auto" (default: cuda when usable). */
export declare function load(options?: OpenOptions): TinyKernels;
