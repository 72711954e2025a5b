# The PostgREST tutorial's database on a real PostgreSQL, queried over the
# test network.  Nodes: server (postgresql), client (postgresql-client).

# psql as the API server would connect: as authenticator, over VLAN 1,
# then switched to the anonymous role.  -A -t: bare rows, fields split by |.
AS_WEB_ANON = (
    "PGPASSWORD=mysecretpassword psql -h server -U authenticator -d postgres "
    "-v ON_ERROR_STOP=1 -q -A -t -c 'set role web_anon' -c "
)

start_all()

with subtest("PostgreSQL is up on the server"):
    server.wait_for_unit("postgresql@15-main.service")
    server.wait_for_open_port(5432)
    server.succeed("runuser -u postgres -- psql -q -f /srv/todos.sql")

with subtest("the client reaches the database over the VLAN"):
    client.wait_for_unit("multi-user.target")
    client.wait_for_open_port(5432, "server")

with subtest("web_anon reads the two todos"):
    rows = client.succeed(AS_WEB_ANON + "'select id, done, task, due from api.todos order by id'")
    t.assertEqual(
        rows.splitlines(),
        ["1|f|finish tutorial 0|", "2|f|pat self on back|"],
    )

with subtest("web_anon may not write"):
    client.fail(AS_WEB_ANON + "\"insert into api.todos (task) values ('sneaky')\"")

with subtest("a wrong password is refused"):
    client.fail(
        "PGPASSWORD=wrong psql -h server -U authenticator -d postgres -c 'select 1'"
    )
