import express from 'express';
import { createSessions } from 'satchel';
import { session } from 'satchel/express';
import { sqliteStore } from 'satchel/stores/sqlite';

declare module 'satchel' {
  interface SessionData {
    cart: string[]; // declared once: req.session.get('cart') is a string[]
  }
}

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const sessions = createSessions({ store: sqliteStore({ path: 'sessions.db' }) });
const app = express();
app.use(session(sessions));
app.get('/add_to_cart/:item/', (req, res) => {
  const cart = req.session.update('cart', (cart = []) => [...cart, req.params.item]);
  res.send(`<ul>${cart.map((item) => `<li>${escapeHtml(item)}</li>`).join('')}</ul>`);
});
app.listen(Number(process.env.PORT ?? 8000));
