# The todos test: `server` serves a JSON todo list on port 3000, `client`
# reads it over the test VLAN.  Nodes: server, client (see todos.toml).
import json

TODOS_URL = "http://server:3000/todos.json"

start_all()

with subtest("the server publishes the list"):
    server.wait_for_open_port(3000)
    server.succeed("test -s /srv/www/todos.json")

with subtest("the client reaches the server by host name, across the VLAN"):
    client.wait_for_open_port(3000, "server")

with subtest("the list comes back as JSON"):
    todos = json.loads(client.succeed(f"wget -qO- {TODOS_URL}"))
    t.assertEqual([todo["id"] for todo in todos], [1, 2, 3])
    t.assertEqual(
        [todo["task"] for todo in todos],
        [
            "write the test script",
            "boot the server and the client",
            "read the list across the VLAN",
        ],
    )

with subtest("exactly one todo is still open"):
    still_open = [todo["task"] for todo in todos if not todo["done"]]
    t.assertEqual(still_open, ["read the list across the VLAN"])

with subtest("a missing resource is an error"):
    client.fail("wget -qO- http://server:3000/missing.json")
