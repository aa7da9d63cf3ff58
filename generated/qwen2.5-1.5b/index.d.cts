import type { AttentionInputs, AttentionOutputs, OpenOptions } from "tidarc/kernels";
/** The model these kernels were compiled for. */
export declare const model: {
    readonly name: "qwen2.5-1.5b";
    readonly family: "qwen2";
    readonly layers: 28;
    readonly hiddenSize: 1536;
    readonly queryHeads: 12;
    readonly kvHeads: 2;
    readonly headDim: 128;
    readonly intermediateSize: 8960;
    readonly vocabSize: 151936;
    readonly ropeTheta: 1000000;
    readonly rmsNormEps: 0.000001;
    readonly qkNorm: false;
    readonly tieEmbeddings: true;
    readonly dtype: "bf16";
    readonly maskTokenId: 151662;
    readonly draftLengths: readonly [16];
    readonly maxPositionEmbeddings: 131072;
};
/** Per variant: mask, shapes, exported symbols and launch geometry (from manifest.json). */
export declare const variants: {
    readonly tidar_k16: {
        readonly name: "tidar_k16";
        readonly draft: 16;
        readonly steps: 272;
        readonly rows: 1632;
        readonly mask: {
            readonly kind: "tidar-decode";
            readonly params: {
                readonly draft: 16;
            };
        };
        readonly shape: {
            readonly dtype: "bf16";
            readonly headDim: 128;
            readonly qHeads: 12;
            readonly kvHeads: 2;
        };
        readonly symbols: {
            readonly cuda: "tidarc_attn_tidar_k16_bf16_d128_q12_kv2";
            readonly cpu: "tidarc_cpu_attn_tidar_k16_bf16_d128_q12_kv2";
        };
        readonly launch: {
            readonly grid: readonly ["splits == 1 ? rowTiles : rowTiles * batch * kvHeads + 1", "splits == 1 ? batch * kvHeads : 1", "splits"];
            readonly rowTiles: 13;
            readonly block: 128;
            readonly dynamicSharedBytes: 69632;
        };
    };
    readonly block_k16: {
        readonly name: "block_k16";
        readonly draft: 16;
        readonly steps: 16;
        readonly rows: 96;
        readonly mask: {
            readonly kind: "block-diffusion";
            readonly params: {
                readonly block: 16;
            };
        };
        readonly shape: {
            readonly dtype: "bf16";
            readonly headDim: 128;
            readonly qHeads: 12;
            readonly kvHeads: 2;
        };
        readonly symbols: {
            readonly cuda: "tidarc_attn_block_k16_bf16_d128_q12_kv2";
            readonly cpu: "tidarc_cpu_attn_block_k16_bf16_d128_q12_kv2";
        };
        readonly launch: {
            readonly grid: readonly ["splits == 1 ? rowTiles : rowTiles * batch * kvHeads + 1", "splits == 1 ? batch * kvHeads : 1", "splits"];
            readonly rowTiles: 1;
            readonly block: 192;
            readonly dynamicSharedBytes: 69632;
        };
    };
    readonly ar: {
        readonly name: "ar";
        readonly draft: null;
        readonly steps: 1;
        readonly rows: 6;
        readonly mask: {
            readonly kind: "causal";
            readonly params: {
                readonly length: 1;
            };
        };
        readonly shape: {
            readonly dtype: "bf16";
            readonly headDim: 128;
            readonly qHeads: 12;
            readonly kvHeads: 2;
        };
        readonly symbols: {
            readonly cuda: "tidarc_attn_ar_bf16_d128_q12_kv2";
            readonly cpu: "tidarc_cpu_attn_ar_bf16_d128_q12_kv2";
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
        readonly rows: 384;
        readonly mask: {
            readonly kind: "causal";
            readonly params: {
                readonly length: 64;
            };
        };
        readonly shape: {
            readonly dtype: "bf16";
            readonly headDim: 128;
            readonly qHeads: 12;
            readonly kvHeads: 2;
        };
        readonly symbols: {
            readonly cuda: "tidarc_attn_prefill_c64_bf16_d128_q12_kv2";
            readonly cpu: "tidarc_cpu_attn_prefill_c64_bf16_d128_q12_kv2";
        };
        readonly launch: {
            readonly grid: readonly ["splits == 1 ? rowTiles : rowTiles * batch * kvHeads + 1", "splits == 1 ? batch * kvHeads : 1", "splits"];
            readonly rowTiles: 4;
            readonly block: 192;
            readonly dynamicSharedBytes: 69632;
        };
    };
};
export type VariantName = keyof typeof variants;
/** Typed entry points of the attention kernels of model "qwen2.5-1.5b", one per variant. */
export interface Qwen2515bKernels {
    /** The backend that runs the kernels: "cpu" (the C++ library) or "cuda" (the fatbins on the GPU). */
    readonly backend: string;
    /**
     * TiDAR decode step, draft length 16: 272 in-step tokens (16 drafts + 16 blocks of 16 mask tokens).
     *
     * q, o: [batch, 272, 12, 128] bf16 bits (Uint16Array);
     * kCache, vCache: [batch, 2, cacheCapacity, 128]; kStep, vStep: [batch, 272, 2, 128];
     * lse: [batch, 272, 12] natural log. Tiles: 0 full, 28 partial, 89 empty in-step tiles skipped.
     */
    tidarK16(inputs: AttentionInputs): AttentionOutputs;
    /** TiDAR decode step, draft length 16: 272 in-step tokens (16 drafts + 16 blocks of 16 mask tokens), off the event loop. */
    tidarK16Async(inputs: AttentionInputs): Promise<AttentionOutputs>;
    /**
     * prefill mask block: 16 mask tokens that see the prompt and each other.
     *
     * q, o: [batch, 16, 12, 128] bf16 bits (Uint16Array);
     * kCache, vCache: [batch, 2, cacheCapacity, 128]; kStep, vStep: [batch, 16, 2, 128];
     * lse: [batch, 16, 12] natural log. Tiles: 0 full, 1 partial, 0 empty in-step tiles skipped.
     */
    blockK16(inputs: AttentionInputs): AttentionOutputs;
    /** prefill mask block: 16 mask tokens that see the prompt and each other, off the event loop. */
    blockK16Async(inputs: AttentionInputs): Promise<AttentionOutputs>;
    /**
     * AR decode step: 1 in-step token (the k = 0 case).
     *
     * q, o: [batch, 1, 12, 128] bf16 bits (Uint16Array);
     * kCache, vCache: [batch, 2, cacheCapacity, 128]; kStep, vStep: [batch, 1, 2, 128];
     * lse: [batch, 1, 12] natural log. Tiles: 0 full, 1 partial, 0 empty in-step tiles skipped.
     */
    ar(inputs: AttentionInputs): AttentionOutputs;
    /** AR decode step: 1 in-step token (the k = 0 case), off the event loop. */
    arAsync(inputs: AttentionInputs): Promise<AttentionOutputs>;
    /**
     * prefill chunk: 64 prompt tokens, causal among themselves, after the cached prompt so far.
     *
     * q, o: [batch, 64, 12, 128] bf16 bits (Uint16Array);
     * kCache, vCache: [batch, 2, cacheCapacity, 128]; kStep, vStep: [batch, 64, 2, 128];
     * lse: [batch, 64, 12] natural log. Tiles: 0 full, 4 partial, 0 empty in-step tiles skipped.
     */
    prefillC64(inputs: AttentionInputs): AttentionOutputs;
    /** prefill chunk: 64 prompt tokens, causal among themselves, after the cached prompt so far, off the event loop. */
    prefillC64Async(inputs: AttentionInputs): Promise<AttentionOutputs>;
    /** Releases the loaded kernel library. */
    close(): void;
}
/** Opens the kernels compiled next to this file (see manifest.json) on options.backend: "cpu", "cuda", or "auto" (default: cuda when usable). */
export declare function load(options?: OpenOptions): Qwen2515bKernels;
