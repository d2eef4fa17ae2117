// A merchant backend in Node with the wechatpay-axios-plugin SDK, pointed at the simulator by a kit.
// Usage: node backend.js KIT_DIR API_BASE
// Creates an order, queries it; creates a second one, closes it, queries it (every answer verified
// by the SDK with pub_key.pem); then serves its notify_url until one TRANSACTION.SUCCESS arrives,
// verifies it with pub_key.pem and decrypts it with the APIv3 key. Reports on stdout, one JSON a line.
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');
const { Wechatpay, Rsa, Aes, Formatter } = require('wechatpay-axios-plugin');

const [kitDir, apiBase] = process.argv.slice(2);
const kit = JSON.parse(fs.readFileSync(path.join(kitDir, 'merchant.json'), 'utf8'));
const privateKey = Rsa.from(fs.readFileSync(path.join(kitDir, 'apiclient_key.pem')), Rsa.KEY_TYPE_PRIVATE);
const publicKey = Rsa.from(fs.readFileSync(path.join(kitDir, 'pub_key.pem')), Rsa.KEY_TYPE_PUBLIC);
const wxpay = new Wechatpay({
  mchid: kit.mchid, serial: kit.merchant_serial, privateKey,
  certs: { [kit.public_key_id]: publicKey }, baseURL: apiBase,
  headers: { 'Wechatpay-Serial': kit.public_key_id },
});
const report = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
const shanghai = (date) => new Date(date.getTime() + 8 * 3600e3).toISOString().slice(0, 19) + '+08:00';

function onNotification(req, res) {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const h = req.headers;
    const fresh = Math.abs(Formatter.timestamp() - Number(h['wechatpay-timestamp'])) <= 300;
    const verified = fresh && h['wechatpay-serial'] === kit.public_key_id
      && Rsa.verify(Formatter.response(h['wechatpay-timestamp'], h['wechatpay-nonce'], body),
        h['wechatpay-signature'], publicKey);
    if (!verified) {
      res.writeHead(401, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ code: 'FAIL', message: '签名验证失败' }));
      return;
    }
    const { resource, event_type: eventType } = JSON.parse(body);
    const plain = Aes.AesGcm.decrypt(resource.ciphertext, kit.apiv3_key, resource.nonce, resource.associated_data);
    res.writeHead(204);
    res.end();
    report({ event: 'notified', event_type: eventType, resource: JSON.parse(plain) });
    setTimeout(() => process.exit(0), 50);
  });
}

async function main() {
  const server = http.createServer(onNotification);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const notifyUrl = `http://127.0.0.1:${server.address().port}/notify`;
  const order = (outTradeNo, total) => wxpay.v3.pay.transactions.native.post({
    appid: kit.appid, mchid: kit.mchid, description: 'Node 后端测试订单', out_trade_no: outTradeNo,
    notify_url: notifyUrl, time_expire: shanghai(new Date(Date.now() + 15 * 60e3)), amount: { total, currency: 'CNY' },
  });
  const query = (outTradeNo) => wxpay.v3.pay.transactions.outTradeNo._out_trade_no_.get({
    params: { mchid: kit.mchid }, out_trade_no: outTradeNo,
  });
  const stamp = Date.now().toString(36).toUpperCase();
  const paid = `NODE${stamp}P`;
  const closed = `NODE${stamp}C`;
  const created = await order(paid, 4200);
  const queried = await query(paid);
  await order(closed, 100);
  const close = await wxpay.v3.pay.transactions.outTradeNo._out_trade_no_.close.post(
    { mchid: kit.mchid }, { out_trade_no: closed },
  );
  const afterClose = await query(closed);
  report({
    event: 'ready', out_trade_no: paid, code_url: created.data.code_url, created_status: created.status,
    query: queried.data, close_status: close.status, closed_query: afterClose.data,
  });
  setTimeout(() => { report({ event: 'timeout' }); process.exit(3); }, 20000);
}

main().catch((error) => {
  report({ event: 'error', message: String(error && error.message), status: error.response && error.response.status,
    data: error.response && error.response.data });
  process.exit(2);
});
