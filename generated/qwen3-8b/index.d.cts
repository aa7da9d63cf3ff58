import type { AttentionInputs, AttentionOutputs, OpenOptions } from "tidarc/kernels";
/** The model these kernels were compiled for. */
export declare const model: {
    readonly name: "qwen3-8b";
    readonly family: "qwen3";
    readonly layers: 36;
    readonly hiddenSize: 4096;
    readonly queryHeads: 32;
    readonly kvHeads: 8;
    readonly headDim: 128;
    readonly intermediateSize: 12288;
    readonly vocabSize: 151936;
    readonly ropeTheta: 1000000;
    readonly rmsNormEps: 0.000001;
    readonly qkNorm: true;
    readonly tieEmbeddings: false;
    readonly dtype: "bf16";
    readonly maskTokenId: 151662;
    readonly draftLengths: readonly [4, 8, 16];
    readonly maxPositionEmbeddings: 40960;
};
/** Per variant: mask, shapes, exported symbols and launch geometry (from manifest.json). */
export declare const variants: {
    readonly tidar_k4: {
        readonly name: "tidar_k4";
        readonly draft: 4;
        readonly steps: 20;
        readonly rows: 80;
        readonly mask: {
            readonly kind: "tidar-decode";
            readonly params: {
                readonly draft: 4;
            };
        };
        readonly shape: {
            readonly dtype: "bf16";
            readonly headDim: 128;
            readonly qHeads: 32;
            readonly kvHeads: 8;
        };
        readonly symbols: {
            readonly cuda: "tidarc_attn_tidar_k4_bf16_d128_q32_kv8";
            readonly cpu: "tidarc_cpu_attn_tidar_k4_bf16_d128_q32_kv8";
        };
        readonly launch: {
            readonly grid: readonly ["splits == 1 ? rowTiles : rowTiles * batch * kvHeads + 1", "splits == 1 ? batch * kvHeads : 1", "splits"];
            readonly rowTiles: 1;
            readonly block: 160;
            readonly dynamicSharedBytes: 69632;
        };
    };
    readonly tidar_k8: {
        readonly name: "tidar_k8";
        readonly draft: 8;
        readonly steps: 72;
        readonly rows: 288;
        readonly mask: {
            readonly kind: "tidar-decode";
            readonly params: {
                readonly draft: 8;
            };
        };
        readonly shape: {
            readonly dtype: "bf16";
            readonly headDim: 128;
            readonly qHeads: 32;
            readonly kvHeads: 8;
        };
        readonly symbols: {
            readonly cuda: "tidarc_attn_tidar_k8_bf16_d128_q32_kv8";
            readonly cpu: "tidarc_cpu_attn_tidar_k8_bf16_d128_q32_kv8";
        };
        readonly launch: {
            readonly grid: readonly ["splits == 1 ? rowTiles : rowTiles * batch * kvHeads + 1", "splits == 1 ? batch * kvHeads : 1", "splits"];
            readonly rowTiles: 3;
            readonly block: 96;
            readonly dynamicSharedBytes: 60928;
        };
    };
    readonly tidar_k16: {
        readonly name: "tidar_k16";
        readonly draft: 16;
        readonly steps: 272;
        readonly rows: 1088;
        readonly mask: {
            readonly kind: "tidar-decode";
            readonly params: {
                readonly draft: 16;
            };
        };
        readonly shape: {
            readonly dtype: "bf16";
            readonly headDim: 128;
            readonly qHeads: 32;
            readonly kvHeads: 8;
        };
        readonly symbols: {
            readonly cuda: "tidarc_attn_tidar_k16_bf16_d128_q32_kv8";
            readonly cpu: "tidarc_cpu_attn_tidar_k16_bf16_d128_q32_kv8";
        };
        readonly launch: {
            readonly grid: readonly ["splits == 1 ? rowTiles : rowTiles * batch * kvHeads + 1", "splits == 1 ? batch * kvHeads : 1", "splits"];
            readonly rowTiles: 9;
            readonly block: 128;
            readonly dynamicSharedBytes: 69632;
        };
    };
    readonly block_k4: {
        readonly name: "block_k4";
        readonly draft: 4;
        readonly steps: 4;
        readonly rows: 16;
        readonly mask: {
            readonly kind: "block-diffusion";
            readonly params: {
                readonly block: 4;
            };
        };
        readonly shape: {
            readonly dtype: "bf16";
            readonly headDim: 128;
            readonly qHeads: 32;
            readonly kvHeads: 8;
        };
        readonly symbols: {
            readonly cuda: "tidarc_attn_block_k4_bf16_d128_q32_kv8";
            readonly cpu: "tidarc_cpu_attn_block_k4_bf16_d128_q32_kv8";
        };
        readonly launch: {
            readonly grid: readonly ["splits == 1 ? rowTiles : rowTiles * batch * kvHeads + 1", "splits == 1 ? batch * kvHeads : 1", "splits"];
            readonly rowTiles: 1;
            readonly block: 128;
            readonly dynamicSharedBytes: 69632;
        };
    };
    readonly block_k8: {
        readonly name: "block_k8";
        readonly draft: 8;
        readonly steps: 8;
        readonly rows: 32;
        readonly mask: {
            readonly kind: "block-diffusion";
            readonly params: {
                readonly block: 8;
            };
        };
        readonly shape: {
            readonly dtype: "bf16";
            readonly headDim: 128;
            readonly qHeads: 32;
            readonly kvHeads: 8;
        };
        readonly symbols: {
            readonly cuda: "tidarc_attn_block_k8_bf16_d128_q32_kv8";
            readonly cpu: "tidarc_cpu_attn_block_k8_bf16_d128_q32_kv8";
        };
        readonly launch: {
            readonly grid: readonly ["splits == 1 ? rowTiles : rowTiles * batch * kvHeads + 1", "splits == 1 ? batch * kvHeads : 1", "splits"];
            readonly rowTiles: 1;
            readonly block: 64;
            readonly dynamicSharedBytes: 69632;
        };
    };
    readonly block_k16: {
        readonly name: "block_k16";
        readonly draft: 16;
        readonly steps: 16;
        readonly rows: 64;
        readonly mask: {
            readonly kind: "block-diffusion";
            readonly params: {
                readonly block: 16;
            };
        };
        readonly shape: {
            readonly dtype: "bf16";
            readonly headDim: 128;
            readonly qHeads: 32;
            readonly kvHeads: 8;
        };
        readonly symbols: {
            readonly cuda: "tidarc_attn_block_k16_bf16_d128_q32_kv8";
            readonly cpu: "tidarc_cpu_attn_block_k16_bf16_d128_q32_kv8";
        };
        readonly launch: {
            readonly grid: readonly ["splits == 1 ? rowTiles : rowTiles * batch * kvHeads + 1", "splits == 1 ? batch * kvHeads : 1", "splits"];
            readonly rowTiles: 1;
            readonly block: 128;
            readonly dynamicSharedBytes: 69632;
        };
    };
    readonly ar: {
        readonly name: "ar";
        readonly draft: null;
        readonly steps: 1;
        readonly rows: 4;
        readonly mask: {
            readonly kind: "causal";
            readonly params: {
                readonly length: 1;
            };
        };
        readonly shape: {
            readonly dtype: "bf16";
            readonly headDim: 128;
            readonly qHeads: 32;
            readonly kvHeads: 8;
        };
        readonly symbols: {
            readonly cuda: "tidarc_attn_ar_bf16_d128_q32_kv8";
            readonly cpu: "tidarc_cpu_attn_ar_bf16_d128_q32_kv8";
        };
        readonly launch: {
            readonly grid: readonly ["splits == 1 ? rowTiles : rowTiles * batch * kvHeads + 1", "splits == 1 ? batch * kvHeads : 1", "splits"];
            readonly rowTiles: 1;
            readonly block: 128;
            readonly dynamicSharedBytes: 69632;
        };
    };
    readonly prefill_c64: {
        readonly name: "prefill_c64";
        readonly draft: null;
        readonly steps: 64;
        readonly rows: 256;
        readonly mask: {
            readonly kind: "causal";
            readonly params: {
                readonly length: 64;
            };
        };
        readonly shape: {
            readonly dtype: "bf16";
            readonly headDim: 128;
            readonly qHeads: 32;
            readonly kvHeads: 8;
        };
        readonly symbols: {
            readonly cuda: "tidarc_attn_prefill_c64_bf16_d128_q32_kv8";
            readonly cpu: "tidarc_cpu_attn_prefill_c64_bf16_d128_q32_kv8";
        };
        readonly launch: {
            readonly grid: readonly ["splits == 1 ? rowTiles : rowTiles * batch * kvHeads + 1", "splits == 1 ? batch * kvHeads : 1", "splits"];
            readonly rowTiles: 2;
            readonly block: 256;
            readonly dynamicSharedBytes: 69632;
        };
    };
};
export type VariantName = keyof typeof variants;
/** Typed entry points of the attention kernels of model "qwen3-8b", one per variant. */
export interface Qwen38bKernels {
    /** The backend that runs the kernels: "cpu" (the C++ library) or "cuda" (the fatbins on the GPU). */
    readonly backend: string;
    /**
     * TiDAR decode step, draft length 4: 20 in-step tokens (4 drafts + 4 blocks of 4 mask tokens).
     *
     * q, o: [batch, 20, 32, 128] bf16 bits (Uint16Array);
     * kCache, vCache: [batch, 8, cacheCapacity, 128]; kStep, vStep: [batch, 20, 8, 128];
     * lse: [batch, 20, 32] natural log. Tiles: 0 full, 1 partial, 0 empty in-step tiles skipped.
     */
    tidarK4(inputs: AttentionInputs): AttentionOutputs;
    /** TiDAR decode step, draft length 4: 20 in-step tokens (4 drafts + 4 blocks of 4 mask tokens), off the event loop. */
    tidarK4Async(inputs: AttentionInputs): Promise<AttentionOutputs>;
    /**
     * TiDAR decode step, draft length 8: 72 in-step tokens (8 drafts + 8 blocks of 8 mask tokens).
     *
     * q, o: [batch, 72, 32, 128] bf16 bits (Uint16Array);
     * kCache, vCache: [batch, 8, cacheCapacity, 128]; kStep, vStep: [batch, 72, 8, 128];
     * lse: [batch, 72, 32] natural log. Tiles: 0 full, 6 partial, 3 empty in-step tiles skipped.
     */
    tidarK8(inputs: AttentionInputs): AttentionOutputs;
    /** TiDAR decode step, draft length 8: 72 in-step tokens (8 drafts + 8 blocks of 8 mask tokens), off the event loop. */
    tidarK8Async(inputs: AttentionInputs): Promise<AttentionOutputs>;
    /**
     * TiDAR decode step, draft length 16: 272 in-step tokens (16 drafts + 16 blocks of 16 mask tokens).
     *
     * q, o: [batch, 272, 32, 128] bf16 bits (Uint16Array);
     * kCache, vCache: [batch, 8, cacheCapacity, 128]; kStep, vStep: [batch, 272, 8, 128];
     * lse: [batch, 272, 32] natural log. Tiles: 0 full, 17 partial, 64 empty in-step tiles skipped.
     */
    tidarK16(inputs: AttentionInputs): AttentionOutputs;
    /** TiDAR decode step, draft length 16: 272 in-step tokens (16 drafts + 16 blocks of 16 mask tokens), off the event loop. */
    tidarK16Async(inputs: AttentionInputs): Promise<AttentionOutputs>;
    /**
     * prefill mask block: 4 mask tokens that see the prompt and each other.
     *
     * q, o: [batch, 4, 32, 128] bf16 bits (Uint16Array);
     * kCache, vCache: [batch, 8, cacheCapacity, 128]; kStep, vStep: [batch, 4, 8, 128];
     * lse: [batch, 4, 32] natural log. Tiles: 0 full, 1 partial, 0 empty in-step tiles skipped.
     */
    blockK4(inputs: AttentionInputs): AttentionOutputs;
    /** prefill mask block: 4 mask tokens that see the prompt and each other, off the event loop. */
    blockK4Async(inputs: AttentionInputs): Promise<AttentionOutputs>;
    /**
     * prefill mask block: 8 mask tokens that see the prompt and each other.
     *
     * q, o: [batch, 8, 32, 128] bf16 bits (Uint16Array);
     * kCache, vCache: [batch, 8, cacheCapacity, 128]; kStep, vStep: [batch, 8, 8, 128];
     * lse: [batch, 8, 32] natural log. Tiles: 0 full, 1 partial, 0 empty in-step tiles skipped.
     */
    blockK8(inputs: AttentionInputs): AttentionOutputs;
    /** prefill mask block: 8 mask tokens that see the prompt and each other, off the event loop. */
    blockK8Async(inputs: AttentionInputs): Promise<AttentionOutputs>;
    /**
     * prefill mask block: 16 mask tokens that see the prompt and each other.
     *
     * q, o: [batch, 16, 32, 128] bf16 bits (Uint16Array);
     * kCache, vCache: [batch, 8, cacheCapacity, 128]; kStep, vStep: [batch, 16, 8, 128];
     * lse: [batch, 16, 32] natural log. Tiles: 0 full, 1 partial, 0 empty in-step tiles skipped.
     */
    blockK16(inputs: AttentionInputs): AttentionOutputs;
    /** prefill mask block: 16 mask tokens that see the prompt and each other, off the event loop. */
    blockK16Async(inputs: AttentionInputs): Promise<AttentionOutputs>;
    /**
     * AR decode step: 1 in-step token (the k = 0 case).
     *
     * q, o: [batch, 1, 32, 128] bf16 bits (Uint16Array);
     * kCache, vCache: [batch, 8, cacheCapacity, 128]; kStep, vStep: [batch, 1, 8, 128];
     * lse: [batch, 1, 32] natural log. Tiles: 0 full, 1 partial, 0 empty in-step tiles skipped.
     */
    ar(inputs: AttentionInputs): AttentionOutputs;
    /** AR decode step: 1 in-step token (the k = 0 case), off the event loop. */
    arAsync(inputs: AttentionInputs): Promise<AttentionOutputs>;
    /**
     * prefill chunk: 64 prompt tokens, causal among themselves, after the cached prompt so far.
     *
     * q, o: [batch, 64, 32, 128] bf16 bits (Uint16Array);
     * kCache, vCache: [batch, 8, cacheCapacity, 128]; kStep, vStep: [batch, 64, 8, 128];
     * lse: [batch, 64, 32] natural log. Tiles: 0 full, 2 partial, 0 empty in-step tiles skipped.
     */
    prefillC64(inputs: AttentionInputs): AttentionOutputs;
    /** prefill chunk: 64 prompt tokens, causal among themselves, after the cached prompt so far, off the event loop. */
    prefillC64Async(inputs: AttentionInputs): Promise<AttentionOutputs>;
    /** Releases the loaded kernel library. */
    close(): void;
}
/** Opens the kernels compiled next to this file (see manifest.json) on options.backend: "cpu", "cuda", or "auto" (default: cuda when usable). */
export declare function load(options?: OpenOptions): Qwen38bKernels;
