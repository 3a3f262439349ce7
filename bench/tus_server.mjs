// The upload peer: a tus 1.0 server (@tus/server + @tus/file-store, stock options) on loopback.
//   node tus_server.mjs HOST PORT DIRECTORY
// Run by bench/peer.py from bench/.peer/, where the benchmark installs the pinned packages.
// FileStore appends each PATCH body to a file with a write stream: no checksum, no fsync.
import { Server } from "@tus/server";
import { FileStore } from "@tus/file-store";

const [host, port, directory] = process.argv.slice(2);
const tus = new Server({ path: "/files", datastore: new FileStore({ directory }) });
const http = tus.listen({ host, port: Number(port) }, () => console.log(`tus listening on http://${host}:${port}/files`));
http.requestTimeout = 0; // a 1 GiB PATCH may take longer than node's default 300 s on a slow disk
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    http.close();
    http.closeAllConnections();
    process.exit(0);
  });
}
