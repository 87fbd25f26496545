/** Approval is exact: the substring test of the original tool was wrong in both directions. */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type Approval, compileApproval as compile } from '../src/attribution/approval.js';
import type { ApprovedPattern } from '../src/types.js';

const compileApproval = (
  approved: ApprovedPattern[],
  rootDir: string,
  passThrough: ApprovedPattern[] = [],
  onPatternError?: (option: string, error: unknown) => void,
) => compile({ approved, passThrough, root: rootDir, onPatternError });
const approves = (approval: Approval) => ({ isApprovedFile: (file: string) => approval.kindOf(file) === 'approved' });

const root = mkdtempSync(join(tmpdir(), 'tripwire-approval-'));
mkdirSync(join(root, 'src/auth/deep'), { recursive: true });
writeFileSync(join(root, 'src/auth/deep/issue.ts'), '');
writeFileSync(join(root, 'src/token-writer.ts'), '');
mkdirSync(join(root, 'src/models'), { recursive: true });
writeFileSync(join(root, 'src/models/token.ts'), '');
const at = (path: string) => join(root, path);

describe('approved patterns', () => {
  it('matches a glob against the whole path relative to root, never a look-alike', () => {
    const approval = approves(compileApproval(['src/auth/**'], root));
    expect(approval.isApprovedFile(at('src/auth/index.ts'))).toBe(true);
    expect(approval.isApprovedFile(at('src/auth/deep/issue.ts'))).toBe(true);
    expect(approval.isApprovedFile(pathToFileURL(at('src/auth/deep/issue.ts')).href)).toBe(true);
    for (const lookAlike of ['src/auth-legacy/x.ts', 'src/legacy/auth_module_old.ts', 'lib/src/auth/x.ts', 'src/authx/y.ts']) {
      expect(approval.isApprovedFile(at(lookAlike)), lookAlike).toBe(false);
    }
    expect(approval.isApprovedFile(at('node_modules/mongodb/lib/cmap/auth/scram.js'))).toBe(false);
    expect(approval.isApprovedFile('/elsewhere/src/auth/index.ts')).toBe(false);
  });

  it('never approves Mongoose, the driver, Node internals or the plugin itself, even when a pattern would', () => {
    const approval = approves(compileApproval([/auth/, /mongoose/, /node:/], root));
    expect(approval.isApprovedFile(at('node_modules/mongodb/lib/cmap/auth/scram.js'))).toBe(false);
    expect(approval.isApprovedFile(at('node_modules/mongoose/lib/model.js'))).toBe(false);
    expect(approval.isApprovedFile('node:internal/process/task_queues')).toBe(false);
    expect(approval.isApprovedFile(at('src/auth/index.ts'))).toBe(true);
  });

  it('takes absolute files and directories exactly, with a directory boundary', () => {
    const approval = approves(compileApproval([at('src/token-writer.ts'), at('src/auth')], root));
    expect(approval.isApprovedFile(at('src/token-writer.ts'))).toBe(true);
    expect(approval.isApprovedFile(at('src/token-writer.tsx'))).toBe(false);
    expect(approval.isApprovedFile(at('src/auth/deep/issue.ts'))).toBe(true);
    expect(approval.isApprovedFile(at('src/authority.ts'))).toBe(false);
  });

  it('answers the same every time for a global RegExp, and lets functions see frames', () => {
    const approval = approves(compileApproval([/\/src\/auth\//g], root));
    for (let i = 0; i < 3; i++) expect(approval.isApprovedFile(at('src/auth/a.ts'))).toBe(true);
    const byFunction = compileApproval([(frame) => frame.function === 'issueToken'], root);
    expect(byFunction.needsFrames).toBe(true);
    expect(byFunction.frameKind({ file: at('x.ts'), line: 1, column: 1, function: 'issueToken' })).toBe('approved');
    expect(byFunction.frameKind({ file: at('x.ts'), line: 1, column: 1, function: 'other' })).toBe('application');
  });

  it('refuses a pattern that approves every file', () => {
    for (const pattern of ['**', '**/*', /.*/, /\//]) {
      expect(() => compileApproval([pattern], root), String(pattern)).toThrow(/approves every file/);
    }
  });
});

describe('who decides: kinds of files', () => {
  it('classifies internal, approved, pass-through and application files; packages pass through unless approved', () => {
    const approval = compileApproval(['src/auth/**', 'node_modules/@acme/auth/**'], root, ['src/models/**']);
    expect(approval.kindOf(at('src/auth/deep/issue.ts'))).toBe('approved');
    expect(approval.kindOf(at('src/models/token.ts'))).toBe('passThrough');
    expect(approval.kindOf(at('node_modules/koa-compose/index.js'))).toBe('passThrough');
    expect(approval.kindOf(at('node_modules/@acme/auth/index.js'))).toBe('approved');
    expect(approval.kindOf(at('src/token-writer.ts'))).toBe('application');
    expect(approval.kindOf(at('node_modules/mongoose/lib/model.js'))).toBe('internal');
    expect(approval.kindOf('node:internal/process/task_queues')).toBe('internal');
  });

  it('refuses approved and passThrough naming the same files, and a passThrough matching everything', () => {
    expect(() => compileApproval(['src/**'], root, ['src/models/**'])).toThrow(/both match src\/models\/token\.ts/);
    expect(() => compileApproval(['src/auth/**'], root, ['src/auth/**'])).toThrow(/both match the same pattern/);
    expect(() => compileApproval(['src/auth/**'], root, ['**'])).toThrow(/matches every file/);
  });

  it('takes a throwing pattern function as "no" for that frame, and says so', () => {
    const errors: string[] = [];
    const approval = compileApproval(
      [
        () => {
          throw new Error('boom');
        },
      ],
      root,
      [
        () => {
          throw new Error('bang');
        },
      ],
      (option, error) => void errors.push(`${option}: ${(error as Error).message}`),
    );
    expect(approval.frameKind({ file: at('x.ts'), line: 1, column: 1 })).toBe('application');
    expect(errors).toEqual(['approved: boom', 'passThrough: bang']);
  });
});
