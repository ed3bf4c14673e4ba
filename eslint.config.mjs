// ESLint for the whole repository: the functions, the tests, the harness scripts and the benchmarks.
// TypeScript files are linted with type information (typescript-eslint's projectService finds
// functions/tsconfig.json for functions/src and the root tsconfig.json for the rest), so promise
// misuse — the bug class that loses a write or a ledger entry — is an error, not a review comment.
// Formatting is Prettier's job (.prettierrc); no rule here is about layout.
import js from "@eslint/js";
import comments from "@eslint-community/eslint-plugin-eslint-comments/configs";
import globals from "globals";
import tseslint from "typescript-eslint";

/** require() only inside a function (lazy loading) or for a JSON file; at module top level, import. */
const TOP_LEVEL_REQUIRE = {
  selector: "CallExpression[callee.name='require']:not(:function CallExpression):not([arguments.0.value=/\\.json$/])",
  message: "Use import at module top level; require() is for lazy loading inside a function.",
};

export default tseslint.config(
  {
    // Build output, installed packages and harness state; .gitignore holds the same list.
    ignores: ["**/node_modules/", "functions/lib/", ".harness/", "coverage/"],
  },
  {
    linterOptions: { reportUnusedDisableDirectives: "error" },
  },
  js.configs.recommended,
  // A disable comment must say why (`// eslint-disable-next-line rule -- reason`).
  comments.recommended,
  {
    rules: {
      "@eslint-community/eslint-comments/require-description": ["error", { ignore: [] }],
      "@eslint-community/eslint-comments/disable-enable-pair": ["error", { allowWholeFile: true }],
      eqeqeq: ["error", "always", { null: "ignore" }],
      "object-shorthand": ["error", "properties"],
    },
  },
  {
    files: ["functions/src/**/*.ts", "test/**/*.ts", "scripts/**/*.ts", "bench/**/*.ts"],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // Promises: every one awaited, returned, or explicitly `void`ed; none passed where a
      // callback's result is ignored (an async event listener whose rejection nobody sees).
      "@typescript-eslint/no-floating-promises": ["error", { ignoreVoid: true }],
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/await-thenable": "error",
      "@typescript-eslint/return-await": ["error", "in-try-catch"],
      // `_name` marks a parameter an interface requires but this implementation does not use.
      "@typescript-eslint/no-unused-vars": [
        "error",
        {
          argsIgnorePattern: "^_",
          varsIgnorePattern: "^_",
          caughtErrorsIgnorePattern: "^_",
          destructuredArrayIgnorePattern: "^_",
          ignoreRestSiblings: true,
        },
      ],
      // `require(name) as typeof import(name)` is how a module is loaded lazily, so type
      // annotations with import() stay allowed.
      "@typescript-eslint/consistent-type-imports": ["error", { disallowTypeAnnotations: false }],
      "@typescript-eslint/no-import-type-side-effects": "error",
      "@typescript-eslint/switch-exhaustiveness-check": [
        "error",
        { considerDefaultExhaustiveForUnions: true, requireDefaultForNonUnion: false },
      ],
      "@typescript-eslint/prefer-promise-reject-errors": "error",
      // An async function without `await` is the plain way to implement a Promise-returning
      // interface (providers, stubs, probes); the promise rules above catch the real mistakes.
      "@typescript-eslint/require-await": "off",
      // Heavy SDKs are loaded with require() inside the function that first needs them, so a
      // cold start pays only for its own function (see functions/src/index.ts). That, and reading
      // a JSON file by literal path, are the uses of require(): at module top level, import.
      "@typescript-eslint/no-require-imports": "off",
      "no-restricted-syntax": ["error", TOP_LEVEL_REQUIRE],
    },
  },
  {
    // Cloud Functions log through firebase-functions/logger (structured, with stable names).
    files: ["functions/src/**/*.ts"],
    rules: {
      "no-console": "error",
      // `import { z }` keeps zod's every locale in the bundle (ADR 0012); the namespace import lets it drop them.
      "no-restricted-syntax": [
        "error",
        TOP_LEVEL_REQUIRE,
        {
          selector: "ImportDeclaration[source.value='zod'] > ImportSpecifier[imported.name='z']",
          message: 'Import zod as `import * as z from "zod"` (ADR 0012).',
        },
      ],
    },
  },
  {
    // Plain Node scripts (setup runs before any install, so it cannot be TypeScript) and this file.
    files: ["**/*.mjs", "**/*.js"],
    languageOptions: {
      globals: globals.node,
      sourceType: "module",
    },
  },
);
