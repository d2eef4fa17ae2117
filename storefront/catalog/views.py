"""The catalog: product list, product page, and buying (which creates an order)."""

from flask import Blueprint, redirect, render_template, request, url_for
from sqlalchemy import select

from ..extensions import db
from ..models import Product
from ..services import orders
from ..web import check_csrf, shopper_id

bp = Blueprint("catalog", __name__)
bp.before_request(check_csrf)


@bp.get("/")
def index():
    products = db.session.scalars(select(Product).where(Product.active).order_by(Product.id))
    return render_template("catalog/index.html", products=list(products))


@bp.get("/products/<int:product_id>")
def product(product_id: int):
    item = db.get_or_404(Product, product_id)
    return render_template("catalog/product.html", product=item)


@bp.post("/products/<int:product_id>/buy")
def buy(product_id: int):
    try:
        quantity = int(request.form.get("quantity", "1"))
    except ValueError:
        quantity = 0  # refused by the service with a clear message
    order = orders.create_order(shopper_id(create=True), product_id, quantity,
                                request.form.get("idempotency_key"))
    return redirect(url_for("checkout.pay", order_no=order.order_no), code=303)
