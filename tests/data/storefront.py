start_all()

with subtest("the store boots"):
    store.wait_for_unit("multi-user.target")

with subtest("the storefront answers"):
    gateway.wait_for_unit("multi-user.target")
    store.wait_for_unit("storefront.service")
    gateway.succeed("curl -sf http://store/")
