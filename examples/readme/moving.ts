// Moving a live site to satchel without signing anyone out (README "Moving to satchel").
import { RedisStore } from 'connect-redis';
import pg from 'pg';
import { createClient } from 'redis';
import { createSessions } from 'satchel';
import { fromDjango } from 'satchel/import/django';
import { fromExpressSession } from 'satchel/import/express-session';
import { redisStore } from 'satchel/stores/redis';

const redis = createClient({ url: process.env.REDIS_URL });
await redis.connect();

const options = {
  store: redisStore({ client: redis }),
  importers: [
    // The old Express app's session store and secret(s), exactly as it had them.
    fromExpressSession({
      secrets: [process.env.OLD_SESSION_SECRET!],
      store: new RedisStore({ client: redis }),
    }),
    // The Django project's SECRET_KEY and its database (SESSION_ENGINE 'db').
    fromDjango({
      secretKey: process.env.DJANGO_SECRET_KEY!,
      store: { type: 'postgres', pool: new pg.Pool({ connectionString: process.env.DJANGO_DB }) },
    }),
  ],
};
export const sessions = createSessions(options);
