// Deno and Bun are not installed where these examples are type-checked, nor
// their type packages: these are the two functions web-deno.ts and web-bun.ts
// call, with the signatures from the runtimes' documentation (Deno.serve,
// Bun.serve), so the rest of each file is still checked under strict.
declare namespace Deno {
  function serve(
    options: { port?: number; hostname?: string },
    handler: (request: Request) => Response | Promise<Response>,
  ): { finished: Promise<void>; shutdown(): Promise<void> };
}

declare const Bun: {
  serve(options: {
    port?: number;
    hostname?: string;
    fetch(request: Request): Response | Promise<Response>;
  }): { port: number; stop(): void };
};
