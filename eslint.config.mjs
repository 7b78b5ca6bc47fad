// Lint rules for the whole tree: typescript-eslint's recommended set, run by `npm test`
// (scripts/run-tests.mjs) before any test, so a lint error fails CI like a failing test.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.cache/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      // `_`-prefixed names are deliberately unused (rest siblings that drop a field, callback slots).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' }],
    },
  },
  {
    // Log lines, terminal text and the fail2ban dialect are matched for control characters on purpose.
    files: ['common/filter/**', 'common/config/**', 'agent/sources/**', 'common/log*.ts', 'cli/**'],
    rules: { 'no-control-regex': 'off' },
  },
);
