// Compile-time checks, run by `npm run typecheck` (examples/tsconfig.json):
// the SessionData declaration in app.ts types req.session everywhere.
import type { Request } from 'express';
import { expectTypeOf } from 'vitest';
import type {} from './app.js';

const probe = (req: Request) => ({
  cart: req.session.get('cart', []),
  csrf: req.session.get('csrf'),
});
expectTypeOf(probe).returns.toEqualTypeOf<{ cart: string[]; csrf: string | undefined }>();
// @ts-expect-error a misspelt key is a type error
expectTypeOf((req: Request) => req.session.get('crat')).toBeFunction();
