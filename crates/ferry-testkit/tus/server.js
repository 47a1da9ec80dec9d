// A real tus 1.0 server for Ferry's upload tests (ferry_testkit::upload::TusServer): @tus/server with a file store
// (see package.json; `.ci/run` installs it). Usage: node server.js DIRECTORY
// Listens on 127.0.0.1 on a free port and prints "listening on 127.0.0.1:PORT".
const http = require('node:http');
const { Server } = require('@tus/server');
const { FileStore } = require('@tus/file-store');

const directory = process.argv[2];
if (!directory) {
  console.error('usage: node server.js DIRECTORY');
  process.exit(2);
}
const tus = new Server({ path: '/files', datastore: new FileStore({ directory }) });
const server = http.createServer((req, res) => tus.handle(req, res));
server.listen(0, '127.0.0.1', () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
// The test that started it closes its stdin when it is done: exit then, never linger.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
