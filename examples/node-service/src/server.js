// A small HTTP service. `--self-test` answers one request to itself, prints it and exits.
import { createServer } from 'node:http';

const server = createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ service: 'node-service', path: req.url, node: process.version }));
});

if (process.argv.includes('--self-test')) {
  server.listen(0, '127.0.0.1', async () => {
    const { port } = server.address();
    const body = await (await fetch(`http://127.0.0.1:${port}/health`)).json();
    console.log(`node-service: ${JSON.stringify(body)} as uid ${process.getuid()} in ${process.cwd()}`);
    server.close();
  });
} else {
  const port = Number(process.env.PORT ?? 8080);
  server.listen(port, () => console.log(`node-service listening on ${port}`));
}
