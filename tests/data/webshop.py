start_all()
shop.wait_for_unit("shopd.service")
shop.wait_for_open_port(8080)

# the cart answers
buyer.succeed("curl -sf http://shop:8080/cart")
buyer.succeed("curl -sf http://shop:8080/checkout")
