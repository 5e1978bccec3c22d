import { describeCrashes } from './harness.js';

describeCrashes('file');
