"""A fixed long-poll workload for instruction counting (bench/callgrind/run).

K long-poll subscribers on keep-alive connections; M messages published one at a
time, each only after every subscriber has received the one before. So the server
does the same work on every run: M publishes and K x M poll exchanges of one
message each, which is what makes instruction counts comparable between builds.

    python3 long-poll-driver.py 127.0.0.1:18904 20 100
"""
import asyncio
import json
import sys

XSRF = "0123456789abcdef0123456789abcdef"
HEADERS = (
    "Host: pushwire\r\n"
    f"Cookie: _xsrf={XSRF}\r\n"
    "Content-Type: application/x-www-form-urlencoded\r\n"
    "User-Agent: long-poll-driver/1\r\n"
    "Accept: */*\r\n"
)


async def post(reader, writer, path, form):
    body = form.encode()
    writer.write(f"POST {path} HTTP/1.1\r\n{HEADERS}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"{path}: {head.decode(errors='replace')}")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    return json.loads(await reader.readexactly(length))


async def main(addr, subscribers, messages):
    host, port = addr.rsplit(":", 1)
    publisher = await asyncio.open_connection(host, int(port))
    start = (await post(*publisher, "/a/message/new", f"_xsrf={XSRF}&body=start"))["id"]
    received = [0] * messages
    all_received = [asyncio.Event() for _ in range(messages)]

    async def subscribe():
        connection = await asyncio.open_connection(host, int(port))
        cursor, seen = start, 0
        while seen < messages:
            answer = await post(*connection, "/a/message/updates", f"_xsrf={XSRF}&cursor={cursor}")
            for message in answer["messages"]:
                index = int(message["body"].split()[1])
                received[index] += 1
                if received[index] == subscribers:
                    all_received[index].set()
                cursor, seen = message["id"], seen + 1
        connection[1].close()

    tasks = [asyncio.create_task(subscribe()) for _ in range(subscribers)]
    await asyncio.sleep(0.5)  # every subscriber's first poll is waiting
    for index in range(messages):
        await post(*publisher, "/a/message/new", f"_xsrf={XSRF}&body=message {index}")
        await asyncio.wait_for(all_received[index].wait(), 30)
    await asyncio.gather(*tasks)
    print(f"{subscribers * messages} poll exchanges")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
