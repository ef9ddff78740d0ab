#!/usr/bin/env python3
# Screenshot of the dashboard during a load run, through chromedriver (Debian chromium):
#   loadtest/sweep.sh 300 &  sleep 14
#   python3 loadtest/dashboard_screenshot.py http://127.0.0.1:18080/ docs/dashboard-load.png 5
# Opens the page, waits N seconds, clicks the first conversing call, saves a PNG. Stdlib only.
import json, urllib.request, base64, time, subprocess, sys
drv = subprocess.Popen(["chromedriver", "--port=9515"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(1)
def call(method, path, body=None):
    req = urllib.request.Request("http://127.0.0.1:9515" + path, method=method,
        data=json.dumps(body).encode() if body is not None else None, headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))
try:
    s = call("POST", "/session", {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"binary": "/usr/bin/chromium",
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1500,1000", "--hide-scrollbars"]}}}})
    sid = s["value"]["sessionId"]
    call("POST", f"/session/{sid}/url", {"url": sys.argv[1]})
    time.sleep(float(sys.argv[3]))
    # open one conversing call's detail
    r = call("POST", f"/session/{sid}/element", {"using": "css selector", "value": "#col-conversing .call"})
    if "element-6066-11e4-a52e-4f735466cecf" in r["value"]:
        el = r["value"]["element-6066-11e4-a52e-4f735466cecf"]
        call("POST", f"/session/{sid}/element/{el}/click", {})
        time.sleep(1.5)
    png = call("GET", f"/session/{sid}/screenshot")["value"]
    open(sys.argv[2], "wb").write(base64.b64decode(png))
    call("DELETE", f"/session/{sid}")
finally:
    drv.kill()
