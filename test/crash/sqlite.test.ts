import { describeCrashes } from './harness.js';

describeCrashes('sqlite');
