// The Unleash server of the tests, as the npm registry ships it (tests/unleash_server.py starts and stops it).
// Everything is configured by the environment the fixture gives it: DATABASE_HOST/PORT/USERNAME/PASSWORD/NAME,
// HTTP_PORT, INIT_ADMIN_API_TOKENS, INIT_CLIENT_API_TOKENS (made up for each run), CHECK_VERSION=false,
// SEND_TELEMETRY=false. SIGTERM stops it.
import { start } from 'unleash-server';

await start();
