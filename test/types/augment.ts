import { createSessions, type Session } from 'satchel';

declare module 'satchel' {
  interface SessionData {
    cart: string[];
  }
}
const s = null as unknown as Session;
const cart: string[] | undefined = s.get('cart');
// @ts-expect-error wrong type
s.set('cart', 1);
createSessions();
void cart;
