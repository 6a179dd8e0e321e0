// Type-aware lint: no floating promises anywhere; workflow code may not import Node builtins or I/O modules
// (it must stay deterministic and replayable).
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

const nodeBuiltins = builtinModules.flatMap((m) => [m, `node:${m}`]);
const ioModules = ['dockerode', 'node-ssh', '@octokit/*', 'yaml', 'undici', 'axios', 'chalk', 'commander', '@temporalio/client', '@temporalio/worker', '@temporalio/activity', '@temporalio/testing'];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '**/*.js', '**/*.mjs', '**/*.cjs', 'test/fixtures/**'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/restrict-template-expressions': 'off',
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  {
    // Workflow code and what it imports at run time: deterministic only.
    files: ['src/workflows/**/*.ts', 'src/shared/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: nodeBuiltins.map((name) => ({ name, message: 'Workflow code must be deterministic: no Node builtins. Do I/O in an activity.' })),
        patterns: [{ group: ioModules, message: 'Workflow code must not import I/O modules. Do I/O in an activity.' }],
      }],
      'no-restricted-globals': ['error',
        { name: 'process', message: 'Workflow code must not read the process environment.' },
        { name: 'setTimeout', message: 'Use sleep() from @temporalio/workflow.' },
        { name: 'setInterval', message: 'Use sleep() from @temporalio/workflow.' },
        { name: 'fetch', message: 'Do network I/O in an activity.' }],
    },
  },
  {
    files: ['src/workflows/**/*.ts', 'src/shared/**/*.ts'],
    // Value imports of activity or config modules would pull I/O into the bundle; types are fine.
    rules: {
      '@typescript-eslint/consistent-type-imports': ['error', { prefer: 'type-imports', fixStyle: 'inline-type-imports' }],
    },
  },
);
