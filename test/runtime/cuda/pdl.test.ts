/** runtime/cuda/pdl.ts programmaticLaunchFor: PDL on only where every condition holds, and each failing one is the reason. */
import { describe, expect, test } from 'vitest';
import { type ProgrammaticLaunchInputs, programmaticLaunchFor } from '../../../src/runtime/cuda/pdl.js';

const FIELD = { programmaticLaunch: { minComputeCapability: [9, 0] as const } };
const H100: ProgrammaticLaunchInputs = { option: undefined, manifest: FIELD, computeCapability: [9, 0], compiledArches: ['sm_80', 'sm_86', 'sm_89', 'sm_90'], driverHasLaunchEx: true };

describe('programmaticLaunchFor', () => {
  test('on where everything allows it: default and explicit true alike', () => {
    const d = programmaticLaunchFor(H100);
    expect(d.on).toBe(true);
    expect(d.why).toMatch(/sm_90 kernels keep the PDL contract.*9\.0.*cuLaunchKernelEx/);
    expect(programmaticLaunchFor({ ...H100, option: true })).toEqual(d);
    // An sm_90a-only compile runs SASS of the device's major too.
    expect(programmaticLaunchFor({ ...H100, compiledArches: ['sm_90a'] }).on).toBe(true);
  });

  test('off when asked (--no-pdl), whatever else holds', () => {
    expect(programmaticLaunchFor({ ...H100, option: false })).toEqual({ on: false, why: expect.stringMatching(/--no-pdl/) });
  });

  test('off for a manifest without programmaticLaunch (an older compile), or a malformed one', () => {
    for (const manifest of [{}, { programmaticLaunch: {} as never }, { programmaticLaunch: { minComputeCapability: [9] as never } }]) {
      const d = programmaticLaunchFor({ ...H100, manifest });
      expect(d.on).toBe(false);
      expect(d.why).toMatch(/manifest has no programmaticLaunch.*recompile/);
    }
  });

  test('off below the manifest minimum, and an explicit true there is no error', () => {
    for (const computeCapability of [[8, 0], [8, 6], [8, 9]] as const) {
      const d = programmaticLaunchFor({ ...H100, option: true, computeCapability });
      expect(d.on).toBe(false);
      expect(d.why).toContain(`compute capability ${computeCapability[0]}.${computeCapability[1]} is below 9.0`);
    }
    // A future minimum above the device.
    expect(programmaticLaunchFor({ ...H100, manifest: { programmaticLaunch: { minComputeCapability: [10, 0] } } }).why).toContain('9.0 is below 10.0');
  });

  test('off when the compile has no arch of the device\'s major (the device would JIT older PTX without the wait)', () => {
    const d = programmaticLaunchFor({ ...H100, compiledArches: ['sm_80', 'sm_86', 'sm_89'] });
    expect(d.on).toBe(false);
    expect(d.why).toMatch(/no arch of compute capability 9\.x \(it built sm_80, sm_86, sm_89\).*JIT/);
    // A 10.0 device: tidarc builds no sm_100, so its sm_90 compile would be JIT'd from PTX.
    expect(programmaticLaunchFor({ ...H100, computeCapability: [10, 0], compiledArches: ['sm_90'] }).why).toMatch(/no arch of compute capability 10\.x/);
  });

  test('off when the driver has no cuLaunchKernelEx', () => {
    expect(programmaticLaunchFor({ ...H100, driverHasLaunchEx: false })).toEqual({ on: false, why: expect.stringMatching(/driver has no cuLaunchKernelEx/) });
  });
});
