/**
 * express-session habits, caught with a message that says what to do
 * instead. A session is not a plain object: `req.session.views = 1` would be
 * silently lost, and `req.session.destroy()` would be a bare TypeError.
 *
 * The check sits in the prototype chain, behind every real method and
 * getter, so the API itself never reaches it (no cost per call): only a
 * property the Session does not have does.
 */
const METHODS: Readonly<Record<string, string>> = {
  destroy:
    'session.destroy() is express-session; satchel: session.flush() (deletes data and ID, e.g. at logout)',
  regenerate:
    'session.regenerate() is express-session; satchel: session.cycleKey() (keeps the data under a new ID, e.g. at login)',
  reload:
    'session.reload() is express-session; satchel sessions load once per request, and session.update(key, fn) never loses a concurrent change',
  touch:
    'session.touch() is express-session; satchel pushes the expiry back by itself on every request that finds the session',
  resetMaxAge:
    'session.resetMaxAge() is express-session; satchel: session.setExpiry(seconds | Date | 0 | null)',
  cookie:
    'session.cookie is express-session; set cookie options once in createSessions({ cookie }), and per-session expiry with session.setExpiry()',
};

function habitError(message: string): TypeError {
  return new TypeError(`[satchel] ${message}`);
}

export const guardHabits = {
  install(prototype: object): void {
    const base = Object.getPrototypeOf(prototype) as object;
    const guard = new Proxy(base, {
      get(target, property, receiver) {
        if (typeof property === 'string' && Object.hasOwn(METHODS, property)) {
          throw habitError(METHODS[property]!);
        }
        return Reflect.get(target, property, receiver);
      },
      set(target, property, value, receiver) {
        if (typeof property !== 'string') return Reflect.set(target, property, value, receiver);
        throw habitError(
          `cannot assign session.${property}: session data is read and written with methods, so changes can be saved without losing anyone's; use session.set(${JSON.stringify(property)}, value) and session.get(${JSON.stringify(property)})`,
        );
      },
    });
    Object.setPrototypeOf(prototype, guard);
    // Every promise that resolves to a session asks it for `then`: answered
    // here, on the prototype, instead of by the Proxy (a slow path per request).
    Object.defineProperty(prototype, 'then', { value: undefined });
  },
  saveCallback(): never {
    throw habitError(
      'session.save() takes no callback: it returns a promise (await session.save())',
    );
  },
};
