# A two-node test: a todo API on `server`, queried from `client`.
start_all()
server.wait_for_unit("multi-user.target")
server.wait_for_open_port(3000)

with subtest("the API lists todos"):
    todos = client.succeed("curl -sf http://server:3000/todos.json")
    t.assertIn("buy milk", todos)

with subtest("the API is gone when the server stops"):
    server.succeed("pkill httpd")
    client.fail("curl -sf --max-time 2 http://server:3000/todos.json")

client.succeed("ping -c 1 server")
