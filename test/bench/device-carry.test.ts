/**
 * The device tool's call for the device check (src/bench/device-carry.ts): the one command with its
 * budget, the carried bundle and a time limit the tool allows; refusals of a bundle outside the
 * repository, of a budget past the tool's 600 s and of more than it carries; and the README's
 * device-check section states the very call. Pure, no tools.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { CARRY_LIMIT_BYTES, DEVICE_BUDGET_S, checkCarry, deviceRunCall } from '../../src/bench/device-carry.js';

describe('the device check\'s run call', () => {
  test('one command with the budget, the bundle carried, the budget plus slack as timeout_s (within the tool\'s 600 s)', () => {
    const call = deviceRunCall('out/device-check');
    expect(call).toEqual({
      command: `PYTHONUNBUFFERED=1 python3 scripts/device-check/device_check.py --bundle out/device-check --out $OUT --budget ${DEVICE_BUDGET_S}`,
      carry: ['out/device-check'],
      timeout_s: DEVICE_BUDGET_S + 60,
    });
    expect(call.timeout_s).toBeLessThanOrEqual(600);
    expect(deviceRunCall('out/device-check', 200).timeout_s).toBe(260);
  });

  test('a bundle outside the repository, or a budget the tool cannot run, is refused in one line', () => {
    expect(() => deviceRunCall('/tmp/bundle')).toThrow(/^the bundle must lie inside the repository.*\(--out = \/tmp\/bundle\); allowed: a path under the repository root/);
    expect(() => deviceRunCall('../x')).toThrow(/--out = \.\.\/x/);
    expect(() => deviceRunCall('out/device-check', 560)).toThrow(/outlast the device tool's 600 s a command \(--budget = 560\); allowed: at most 540$/);
  });

  test('the working tree and the bundle must fit the 64 MiB the tool carries', () => {
    expect(checkCarry({ treeBytes: 6 << 20, bundleBytes: 35 << 20 }, 'out/device-check')).toEqual({ totalBytes: 41 << 20, spareBytes: 23 << 20 });
    expect(() => checkCarry({ treeBytes: 6 << 20, bundleBytes: CARRY_LIMIT_BYTES }, 'out/device-check'))
      .toThrow(/^the working tree \(6\.0 MiB\) and the bundle \(64\.0 MiB\) are more than the device tool carries \(carry = out\/device-check\); allowed: at most 64\.0 MiB in all$/);
  });

  test('README\'s device-check section gives the exact call', () => {
    const call = deviceRunCall('out/device-check');
    const readme = readFileSync('README.md', 'utf8');
    const section = readme.slice(readme.indexOf('## On a GPU: the device check'));
    expect(section).toContain(`command: ${call.command}`);
    expect(section).toContain(`carry: ${JSON.stringify(call.carry)}`);
    expect(section).toContain(`timeout_s: ${call.timeout_s}`);
  });
});
