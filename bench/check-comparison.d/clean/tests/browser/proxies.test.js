test('behind a proxy that also buffers responses, SSE never delivers', async () => {});
