// The Target records (issue 13 item 2): one per place generated code runs; what a compile emits,
// how it spells C++ and what it builds follow from them. Needs nothing (pure codegen).
import { describe, expect, test } from 'vitest';
import { ARCHES, ARCH_NAMES } from '../../src/codegen/arch.js';
import { planBuild } from '../../src/codegen/build-steps.js';
import { generateModel } from '../../src/codegen/generate.js';
import { renderVariant } from '../../src/codegen/kernel-source.js';
import { planAttention } from '../../src/codegen/plan.js';
import { TARGETS, TARGET_NAMES, compileTargets, parseTarget } from '../../src/codegen/targets.js';
import { variantForMask } from '../../src/codegen/variant.js';
import { TidarcError } from '../../src/errors.js';
import { tree } from '../../src/ir/mask-builders.js';
import { smallSpec } from '../helpers/random-model.js';

const spec = smallSpec('targets', [2]);
const dirsOf = (files: Iterable<string>) => [...new Set([...files].filter((f) => f.includes('/') && !f.startsWith('index')).map((f) => f.split('/')[0]))].sort();

describe('the records', () => {
  test('one CUDA target per arch in ARCHES, built by nvcc with that arch\'s gencode; the CPU has no device', () => {
    expect(TARGET_NAMES.sort()).toEqual(['cpu', 'emulator', ...ARCH_NAMES].sort());
    for (const a of ARCH_NAMES) {
      const t = TARGETS[a];
      expect(t).toMatchObject({ backend: 'cuda', device: ARCHES[a], tile: ARCHES[a].tile, dialect: { dir: 'cuda' } });
      expect(t.build.kind === 'units' && t.build.flags.includes(ARCHES[a].gencode)).toBe(true);
    }
    expect(TARGETS.cpu.device).toBeUndefined();
    expect(TARGETS.cpu.build).toMatchObject({ kind: 'library', tool: 'cxx', library: 'cpu/libtidarc_cpu.so' });
    // The emulated driver reports an sm_90 and compiles the CUDA sources with g++ at load time.
    expect(TARGETS.emulator).toMatchObject({ backend: 'cuda', device: ARCHES.sm_90, dialect: TARGETS.sm_90.dialect, build: { kind: 'modules', tool: 'cxx' } });
  });

  test('a compile\'s targets: the CPU and the arches asked for, in one order; none is refused in one line', () => {
    expect(compileTargets({ arches: ['sm_90', 'sm_80', 'sm_90'] }).map((t) => t.name)).toEqual(['cpu', 'sm_80', 'sm_90']);
    expect(compileTargets({ targets: ['emulator', 'cpu'] }).map((t) => t.name)).toEqual(['cpu', 'emulator']);
    expect(() => compileTargets({ arches: [] })).toThrow(/at least one GPU architecture/);
    expect(() => compileTargets({ targets: [] })).toThrow(/at least one target/);
    expect(() => compileTargets({ targets: ['cpu', 'sm_70' as never] })).toThrow(/unknown target.*sm_70/);
    try {
      parseTarget('sm_70', '--target');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(TidarcError);
      expect((e as TidarcError).message).toMatch(/unknown target/);
      expect(e).toMatchObject({ details: { field: '--target', value: 'sm_70', allowed: expect.stringContaining('sm_90') } });
    }
  });
});

describe('what a target emits', () => {
  test('the CPU alone: C++ sources and the library, no CUDA source, arch or GEMM', () => {
    const out = generateModel(spec, { targets: ['cpu'] });
    expect(dirsOf(out.files.keys())).toEqual(['cpu']);
    expect(out.manifest.arches).toEqual([]);
    expect(out.manifest.nvccFlags).toEqual([]);
    expect(out.manifest.gemms).toEqual([]);
    expect(out.files.get('CMakeLists.txt')).not.toMatch(/nvcc|TIDARC_NVCC/i);
  });

  test('the emulator alone: the CUDA sources of its sm_90, GEMMs included, and nothing built at compile time', () => {
    const out = generateModel(spec, { targets: ['emulator'] });
    expect(dirsOf(out.files.keys())).toEqual(['cuda']);
    expect(out.manifest.arches).toEqual(['sm_90']);
    expect(out.manifest.gemms!.length).toBeGreaterThan(0);
    expect(planBuild([TARGETS.emulator], out.manifest, [...out.files.keys()])).toEqual({});
    expect(out.files.get('CMakeLists.txt')).not.toMatch(/add_custom_command/);
  });

  test('cpu + an arch (tidarc compile --arch): both source trees; every nvcc unit gets one command in CMakeLists.txt', () => {
    const out = generateModel(spec, { arches: ['sm_80'] });
    expect(dirsOf(out.files.keys())).toEqual(['cpu', 'cuda']);
    const plan = planBuild(compileTargets({ arches: ['sm_80'] }), out.manifest, [...out.files.keys()]);
    const units = plan.cuda!.steps.map((s) => s.unit);
    expect(units).toEqual(expect.arrayContaining(['tidarc_ops', ...out.manifest.gemms!.map((g) => g.unit), ...out.manifest.variants.map((v) => v.name)]));
    const cmake = out.files.get('CMakeLists.txt')!;
    for (const s of plan.cuda!.steps) expect(cmake).toContain(`--orig_src_path_name=${s.inputs[0]} -o \${CMAKE_CURRENT_BINARY_DIR}/${s.output} ${s.inputs[0]}`);
    expect(cmake).toContain('-o ${CMAKE_CURRENT_BINARY_DIR}/cpu/libtidarc_cpu.so');
  });
});

test('the dialect spells a tree mask\'s tables: constant memory on the device, constexpr on the host', () => {
  const plan = planAttention(variantForMask('tree5', tree([-1, 0, 0, 1, -1]), { dtype: 'fp16', headDim: 64, qHeads: 2, kvHeads: 1 }, 'tree'), TARGETS.cpu.tile);
  const cuda = renderVariant(plan, 'm', TARGETS.sm_80.dialect);
  const cpu = renderVariant(plan, 'm', TARGETS.cpu.dialect);
  expect(cuda).toMatch(/__constant__ const uint64_t kTreeVisible\w*\[5\]\[1\]/);
  expect(cuda).toContain('using T = __half;');
  expect(cpu).toMatch(/static constexpr uint64_t kTreeVisible\w*\[5\]\[1\]/);
  expect(cpu).toContain('using Elem = tidarc_cpu::Fp16;');
  expect(cpu).not.toContain('__constant__');
});
