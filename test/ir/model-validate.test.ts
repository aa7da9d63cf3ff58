// Needs: nothing (pure TypeScript + reading bundled examples).
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchDir } from '../helpers/scratch.js';
import { TidarcError } from '../../src/errors.js';
import { MAX_HEADS, type ModelSpec } from '../../src/ir/model.js';
import { loadModelSpecFile } from '../../src/ir/model-file.js';
import { formatModelSpecJson, parseModelJson, validateModelSpec } from '../../src/ir/model-validate.js';
import { validateShape } from '../../src/codegen/variant.js';

const EXAMPLES = new URL('../../examples/', import.meta.url);

async function exampleText(file: string): Promise<string> {
  return readFile(new URL(file, EXAMPLES), 'utf8');
}

function errorOf(fn: () => unknown): TidarcError {
  try {
    fn();
  } catch (err) {
    if (err instanceof TidarcError) return err;
    throw err;
  }
  throw new Error('expected a TidarcError, nothing was thrown');
}

async function rejectionOf(promise: Promise<unknown>): Promise<TidarcError> {
  const err: unknown = await promise.then(() => undefined, (e: unknown) => e);
  if (err instanceof TidarcError) return err;
  throw new Error(`expected a TidarcError, got ${String(err)}`);
}

describe('bundled examples', async () => {
  const files = (await readdir(EXAMPLES)).filter((f) => f.endsWith('.json')).sort();

  it('include tiny, qwen3-8b and qwen2.5-1.5b', () => {
    expect(files).toEqual(expect.arrayContaining(['tiny.json', 'qwen3-8b.json', 'qwen2.5-1.5b.json']));
  });

  it.each(files)('%s validates and is written in canonical form', async (file) => {
    const text = await exampleText(file);
    const spec = parseModelJson(text, `examples/${file}`);
    expect(formatModelSpecJson(spec)).toBe(text);
  });

  it('qwen3-8b has the published shape', async () => {
    const spec = await loadModelSpecFile('examples/qwen3-8b.json');
    expect(spec).toMatchObject({ family: 'qwen3', layers: 36, queryHeads: 32, kvHeads: 8, headDim: 128, qkNorm: true, maskTokenId: 151662 });
  });
});

describe('validateModelSpec', async () => {
  const tiny = JSON.parse(await exampleText('tiny.json')) as Record<string, unknown>;
  const withField = (key: string, value: unknown): Record<string, unknown> => ({ ...tiny, [key]: value });
  const without = (key: string): Record<string, unknown> => Object.fromEntries(Object.entries(tiny).filter(([k]) => k !== key));

  // [what is wrong, the input, the field the sentence must name, a piece of what is allowed]
  const mutations: [string, Record<string, unknown>, string, string][] = [
    ['name with a space', withField('name', 'my model'), 'name', 'letters, digits'],
    ['empty name', withField('name', ''), 'name', 'letters, digits'],
    ['unknown family', withField('family', 'mistral'), 'family', 'qwen2, qwen3, llama'],
    ['layers as a string', withField('layers', '2'), 'layers', 'an integer from 1'],
    ['zero layers', withField('layers', 0), 'layers', 'an integer from 1'],
    ['fractional hiddenSize', withField('hiddenSize', 255.5), 'hiddenSize', 'an integer'],
    ['negative queryHeads', withField('queryHeads', -4), 'queryHeads', 'an integer from 1'],
    ['more kv heads than query heads', withField('kvHeads', 8), 'kvHeads', 'an integer from 1 to 4'],
    ['kv heads not dividing query heads', { ...tiny, queryHeads: 6, kvHeads: 4 }, 'kvHeads', 'a divisor of the query head count (6): 1, 2, 3, 6'],
    ['unsupported head dim', withField('headDim', 96), 'headDim', 'one of 64, 128'],
    ['zero intermediateSize', withField('intermediateSize', 0), 'intermediateSize', 'an integer from 1'],
    ['vocabSize missing', without('vocabSize'), 'vocabSize', 'an integer from 1'],
    ['ropeTheta zero', withField('ropeTheta', 0), 'ropeTheta', 'a number from 10 to 1e12'],
    // Values that ran to exit 0 and garbage (issue 12): no physical model has them.
    ['ropeTheta 1e-300', withField('ropeTheta', 1e-300), 'ropeTheta', 'a number from 10 to 1e12'],
    ['ropeTheta 1 (frequencies do not fall)', withField('ropeTheta', 1), 'ropeTheta', 'a number from 10 to 1e12'],
    ['ropeTheta 1e300', withField('ropeTheta', 1e300), 'ropeTheta', 'a number from 10 to 1e12'],
    ['rmsNormEps negative', withField('rmsNormEps', -1e-6), 'rmsNormEps', 'a number from 1e-12 to 0.1'],
    ['rmsNormEps 1e-300 (0 in float32)', withField('rmsNormEps', 1e-300), 'rmsNormEps', 'a number from 1e-12 to 0.1'],
    ['rmsNormEps 0.5', withField('rmsNormEps', 0.5), 'rmsNormEps', 'a number from 1e-12 to 0.1'],
    ['queryHeads above the kernels\' limit', { ...tiny, queryHeads: 1024, kvHeads: 2 }, 'queryHeads', `an integer from 1 to ${MAX_HEADS}`],
    ['qkNorm as a string', withField('qkNorm', 'yes'), 'qkNorm', 'true or false'],
    ['tieEmbeddings missing', without('tieEmbeddings'), 'tieEmbeddings', 'true or false'],
    ['dtype fp32', withField('dtype', 'fp32'), 'dtype', 'one of bf16, fp16'],
    ['mask token = vocab size', withField('maskTokenId', 260), 'maskTokenId', 'an integer from 0 to 259'],
    ['negative mask token', withField('maskTokenId', -1), 'maskTokenId', 'an integer from 0 to 259'],
    ['empty draft list', withField('draftLengths', []), 'draftLengths', 'a non-empty list'],
    ['draft list not a list', withField('draftLengths', 16), 'draftLengths', 'a non-empty list'],
    ['draft length too long', withField('draftLengths', [4, 33]), 'draftLengths[1]', 'an integer from 1 to 32'],
    ['draft length zero', withField('draftLengths', [0]), 'draftLengths[0]', 'an integer from 1 to 32'],
    ['duplicate draft length', withField('draftLengths', [4, 8, 4]), 'draftLengths[2]', 'distinct'],
    ['maxPositionEmbeddings zero', withField('maxPositionEmbeddings', 0), 'maxPositionEmbeddings', 'an integer from 1'],
    ['ropeScaling not an object', withField('ropeScaling', 'linear'), 'ropeScaling', 'a JSON object'],
    ['ropeScaling yarn', withField('ropeScaling', { type: 'yarn', factor: 4 }), 'ropeScaling.type', 'one of linear, llama3'],
    ['linear without factor', withField('ropeScaling', { type: 'linear' }), 'ropeScaling.factor', 'a number from 1 to 1024'],
    ['linear factor 1e-300', withField('ropeScaling', { type: 'linear', factor: 1e-300 }), 'ropeScaling.factor', 'a number from 1 to 1024'],
    ['linear factor 0.5 (transformers requires >= 1)', withField('ropeScaling', { type: 'linear', factor: 0.5 }), 'ropeScaling.factor', 'a number from 1 to 1024'],
    [
      'llama3 factor 1e-300',
      withField('ropeScaling', { type: 'llama3', factor: 1e-300, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 }),
      'ropeScaling.factor',
      'a number from 1 to 1024',
    ],
    [
      'llama3 low frequency factor 1e-300',
      withField('ropeScaling', { type: 'llama3', factor: 8, lowFreqFactor: 1e-300, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 }),
      'ropeScaling.lowFreqFactor',
      'a number from 0.001 to 1000',
    ],
    [
      'llama3 high frequency factor 1e300',
      withField('ropeScaling', { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 1e300, originalMaxPositionEmbeddings: 8192 }),
      'ropeScaling.highFreqFactor',
      'at most 1000',
    ],
    ['linear with llama3 fields', withField('ropeScaling', { type: 'linear', factor: 2, lowFreqFactor: 1 }), 'ropeScaling.lowFreqFactor', 'one of type, factor'],
    [
      'llama3 high <= low',
      withField('ropeScaling', { type: 'llama3', factor: 8, lowFreqFactor: 4, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 }),
      'ropeScaling.highFreqFactor',
      'greater than the low frequency factor (4)',
    ],
    ['unknown field (typo)', withField('hiddenSzie', 256), 'hiddenSzie', 'did you mean hiddenSize?'],
    ['unknown nested field', withField('ropeScaling', { type: 'linear', factr: 2 }), 'ropeScaling.factr', 'did you mean factor?'],
  ];

  it.each(mutations)('%s: one sentence naming the field', (_what, input, field, allowed) => {
    const err = errorOf(() => validateModelSpec(input, 'm.json'));
    expect(err.code).toBe('invalid-spec');
    expect(err.details.field).toBe(field);
    expect(err.message).toContain(`(${field}`);
    expect(err.message).toContain(allowed);
    expect(err.message.startsWith('m.json: ')).toBe(true);
    expect(err.message).not.toContain('\n');
  });

  it('quotes string values so "2" is not mistaken for 2', () => {
    expect(errorOf(() => validateModelSpec(withField('layers', '2'))).message).toContain('(layers = "2")');
  });

  it('refuses a non-object', () => {
    expect(errorOf(() => validateModelSpec([1, 2])).details.field).toBe('model');
  });

  it('returns canonical key order and sorted draft lengths', () => {
    const shuffled = Object.fromEntries(Object.entries(withField('draftLengths', [4, 2])).reverse());
    const spec = validateModelSpec(shuffled);
    expect(Object.keys(spec)).toEqual(Object.keys(tiny));
    expect(spec.draftLengths).toEqual([2, 4]);
  });

  it('treats null optional fields as absent', () => {
    const spec = validateModelSpec({ ...tiny, ropeScaling: null, maxPositionEmbeddings: null });
    expect('ropeScaling' in spec || 'maxPositionEmbeddings' in spec).toBe(false);
  });

  it('accepts linear and llama3 RoPE scaling', () => {
    const llama3 = { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } as const;
    expect(validateModelSpec(withField('ropeScaling', llama3)).ropeScaling).toEqual(llama3);
    expect(validateModelSpec(withField('ropeScaling', { factor: 2, type: 'linear' })).ropeScaling).toEqual({ type: 'linear', factor: 2 });
  });

  it('accepts the physical ranges\' edges and the head count the kernels are generated for', () => {
    for (const ropeTheta of [10, 1e4, 5e5, 1e6, 3.6e9, 1e12]) expect(validateModelSpec(withField('ropeTheta', ropeTheta)).ropeTheta).toBe(ropeTheta);
    for (const rmsNormEps of [1e-12, 1e-6, 1e-5, 0.1]) expect(validateModelSpec(withField('rmsNormEps', rmsNormEps)).rmsNormEps).toBe(rmsNormEps);
    expect(validateModelSpec(withField('ropeScaling', { type: 'linear', factor: 1 })).ropeScaling).toEqual({ type: 'linear', factor: 1 });
    // One limit: what validates is what the code generator's shape check accepts, and one more is refused by both.
    const widest = validateModelSpec({ ...tiny, queryHeads: MAX_HEADS, kvHeads: 2 });
    expect(() => validateShape({ dtype: widest.dtype, headDim: widest.headDim, qHeads: widest.queryHeads, kvHeads: widest.kvHeads })).not.toThrow();
    expect(() => validateShape({ dtype: 'bf16', headDim: 64, qHeads: MAX_HEADS + 2, kvHeads: 2 })).toThrow(`1..${MAX_HEADS}`);
    expect(() => validateModelSpec({ ...tiny, queryHeads: MAX_HEADS + 2, kvHeads: 2 })).toThrow(`an integer from 1 to ${MAX_HEADS}`);
  });

  it('accepts a ModelSpec it produced (idempotent)', () => {
    const spec: ModelSpec = validateModelSpec(tiny);
    expect(validateModelSpec(spec)).toEqual(spec);
  });
});

describe('malformed JSON and missing files', () => {
  it('names the file and the parser position, as a line and column', () => {
    const err = errorOf(() => parseModelJson('{\n  "name": "tiny",\n}\n', 'bad.json'));
    expect(err.code).toBe('invalid-json');
    expect(err.message).toMatch(/^bad\.json: malformed JSON: .*position 20.*line 3, column 1/);
  });

  it("keeps the parser's message on one line", () => {
    const err = errorOf(() => parseModelJson('{\n  "name": "x",\n  "layers": }\n', 'bad.json'));
    expect(err.code).toBe('invalid-json');
    expect(err.message).toMatch(/^bad\.json: malformed JSON: .*"layers": }/);
    expect(err.message).not.toContain('\n');
  });

  it('reports truncated input', () => {
    const err = errorOf(() => parseModelJson('{"name": ', 'cut.json'));
    expect(err.code).toBe('invalid-json');
    expect(err.message).toMatch(/^cut\.json: malformed JSON: /);
  });

  it('loadModelSpecFile: missing file names the path', async () => {
    const err = await rejectionOf(loadModelSpecFile('examples/no-such-model.json'));
    expect(err.code).toBe('missing-file');
    expect(err.message).toBe('examples/no-such-model.json: no such file');
  });

  it('loadModelSpecFile: malformed file', async () => {
    const dir = await scratchDir('tidarc-model-');
    const path = join(dir, 'model.json');
    await writeFile(path, '{"name": "tiny",}');
    const err = await rejectionOf(loadModelSpecFile(path));
    expect(err.code).toBe('invalid-json');
    expect(err.message.startsWith(`${path}: malformed JSON`)).toBe(true);
  });
});
