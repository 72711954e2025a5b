# A ten-node test: a router, DNS, a database pair, three web servers, a cache and two clients.
start_all()
router.wait_for_unit("multi-user.target")
for node in (dns, db1, db2, web1, web2, web3, cache):
    node.wait_for_unit("multi-user.target")

with subtest("the clients reach the web servers"):
    for client in (client1, client2):
        client.wait_until_succeeds("curl -sf http://web1/")

with subtest("a database fails over"):
    db1.crash()
    db2.wait_for_console_text("promoted to primary")
