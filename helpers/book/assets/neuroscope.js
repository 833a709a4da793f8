/* The neuron browser of the An Neuron book (written by helpers/book/neuroscope.py).
 *
 * Data files register themselves: index.js calls neuroscopeIndex({...}) and each chunk
 * L<layer>/<first neuron>.js calls neuroscopeChunk({...}). They are loaded on demand by
 * inserting <script> tags, which works from disk (file://) and from a server alike; nothing
 * is requested from anywhere else. A neuron is named in the address after '#': #L3N50.
 *
 * Activation colours use one hue: no colour at 0 and below, full colour at the neuron's
 * largest activation, so ordinary tokens stay plain.
 */
(function () {
  "use strict";

  // a neuron's name as typed: L3N50, l03n050 and the like (the address is set to L3N50)
  var NAME = /^L0*(\d+)N0*(\d+)$/i;
  var HUE = "255, 127, 14";
  var shared = { index: null, indexFailed: false, chunks: {}, waiting: {}, views: [], vocab: null, tokenChunks: {} };
  var TOKEN_CHUNK = 1024;

  window.neuroscopeIndex = function (data) {
    shared.index = data;
    shared.views.forEach(function (view) { view.ready(); });
  };

  // everyone waiting for data file ``key`` learns it arrived (error null) or failed
  function settle(key, error) {
    (shared.waiting[key] || []).forEach(function (done) { done(error); });
    delete shared.waiting[key];
  }

  window.neuroscopeChunk = function (data) {
    var key = data.layer + "/" + data.start;
    shared.chunks[key] = data;
    settle(key, null);
  };

  window.neuroscopeVocab = function (data) {
    shared.vocab = data;
    settle("vocab", null);
  };

  window.neuroscopeTokens = function (data) {
    shared.tokenChunks[data.start] = data;
    settle("tokens/" + data.start, null);
  };

  // load a data file once, calling done(error) when it has registered itself
  function need(key, url, ready, done) {
    if (ready()) { done(null); return; }
    if (!shared.waiting[key]) {
      shared.waiting[key] = [];
      loadScript(url, function () { settle(key, "Could not load " + url + "; execute this page again."); });
    }
    shared.waiting[key].push(done);
  }

  function node(tag, attributes, children) {
    var element = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) {
      if (name === "text") element.textContent = attributes[name];
      else element.setAttribute(name, attributes[name]);
    });
    (children || []).forEach(function (child) { if (child) element.appendChild(child); });
    return element;
  }

  function svgNode(tag, attributes, text) {
    var element = document.createElementNS("http://www.w3.org/2000/svg", tag);
    Object.keys(attributes).forEach(function (name) { element.setAttribute(name, attributes[name]); });
    if (text !== undefined) element.textContent = text;
    return element;
  }

  function loadScript(url, onerror) {
    var script = document.createElement("script");
    script.src = url;
    script.onerror = onerror;
    document.head.appendChild(script);
  }

  function shown(token) {
    // a token as Python prints it: its leading space visible, line breaks escaped
    return "'" + token.replace(/\n/g, "\\n").replace(/\t/g, "\\t") + "'";
  }

  function canonical(name) {
    var match = NAME.exec(name);
    return match ? "L" + Number(match[1]) + "N" + Number(match[2]) : null;
  }

  function number(value, digits) {
    return value === null || value === undefined ? "n/a" : Number(value).toFixed(digits);
  }

  function addStyle() {
    if (document.getElementById("neuroscope-style")) return;
    var css = [
      // dark text on the light box the book gives HTML outputs, in the light and the dark theme alike
      ".neuroscope { margin: 1em 0 2em; color: #1f2328; }",
      ".neuroscope form { display: flex; gap: .5em; align-items: center; flex-wrap: wrap; margin-bottom: .5em; }",
      ".neuroscope input, .neuroscope button { color: #1f2328; background: #fff; border: 1px solid #999; border-radius: 3px; }",
      ".neuroscope input { font-family: monospace; width: 12em; padding: .2em .4em; }",
      ".neuroscope button { padding: .15em .7em; cursor: pointer; }",
      ".neuroscope button:hover { background: #eee; }",
      // the theme colours headings itself (light in the dark theme): the box stays light, so they stay dark
      ".neuroscope .ns-title, .neuroscope .ns-content h4, .neuroscope .ns-logits caption { color: #1f2328 !important; }",
      ".ns-message { font-style: italic; }",
      ".ns-title { margin: .6em 0 .2em; font-family: monospace; }",
      ".ns-stats { margin: 0 0 .8em; }",
      ".ns-row { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }",
      ".ns-hist text { font-size: 10px; fill: currentColor; }",
      ".ns-hist .ns-bar { fill: rgb(" + HUE + "); }",
      ".ns-hist .ns-axis { stroke: currentColor; stroke-opacity: .5; }",
      ".ns-logits td { padding: 0 .6em 0 0; font-family: monospace; font-size: .85em; }",
      ".ns-logits th { padding: 0 .6em 0 0; text-align: left; font-size: .85em; }",
      ".ns-examples { padding-left: 2em; }",
      ".ns-example { margin: .45em 0; }",
      ".ns-meta { display: block; font-size: .8em; opacity: .75; }",
      ".ns-text { font-family: monospace; font-size: .85em; white-space: pre-wrap; line-height: 1.8; }",
      ".ns-token { border-radius: 2px; }",
      ".ns-focus { outline: 2px solid rgb(" + HUE + "); outline-offset: 1px; }",
      ".ns-after { opacity: .55; }",
      ".ns-notice { margin: .4em 0 .8em; padding: .4em .6em; border-left: 3px solid rgb(" + HUE + "); background: rgba(" + HUE + ", .08); }",
      ".ns-links a { margin-right: .8em; font-family: monospace; }",
      ".ns-summary { margin: .2em 0; font-size: .9em; }",
      ".ns-scale { display: inline-block; width: 8em; height: .8em; vertical-align: middle; margin: 0 .3em; border: 1px solid rgba(128,128,128,.5);",
      "  background: linear-gradient(to right, rgba(" + HUE + ", 0), rgba(" + HUE + ", 1)); }",
    ].join("\n");
    document.head.appendChild(node("style", { id: "neuroscope-style", text: css }));
  }

  function View(root) {
    this.root = root;
    this.base = root.getAttribute("data-base");
    this.run = root.getAttribute("data-run");
    this.start = root.getAttribute("data-start");
    this.current = null;
    var self = this;
    this.input = node("input", { type: "text", "aria-label": "neuron or token", placeholder: "L3N50 or ' an'", spellcheck: "false" });
    var form = node("form", { class: "ns-form" }, [
      node("label", { text: "Neuron or token " }), this.input,
      node("button", { type: "submit", text: "Show" }),
      node("button", { type: "button", class: "ns-previous", text: "\u2190 previous" }),
      node("button", { type: "button", class: "ns-next", text: "next \u2192" }),
    ]);
    form.addEventListener("submit", function (event) { event.preventDefault(); self.go(self.input.value.trim()); });
    form.querySelector(".ns-previous").addEventListener("click", function () { self.step(-1); });
    form.querySelector(".ns-next").addEventListener("click", function () { self.step(1); });
    this.message = node("p", { class: "ns-message", text: "Loading the neuron index..." });
    this.content = node("div", { class: "ns-content" });
    root.textContent = "";
    root.appendChild(form);
    root.appendChild(this.message);
    root.appendChild(this.content);
  }

  View.prototype.say = function (text) {
    this.message.textContent = text;
    this.message.style.display = text ? "" : "none";
  };

  View.prototype.ready = function () {
    var index = shared.index;
    var self = this;
    if (index.run !== this.run) {
      this.say("The neuron data in _static/neuroscope belongs to another run (" + index.model + ") than this page; execute this page again.");
      return;
    }
    this.say("");
    window.addEventListener("hashchange", function () { self.fromAddress(); });
    this.fromAddress();
  };

  View.prototype.fromAddress = function () {
    var hash = decodeURIComponent(window.location.hash.replace(/^#/, "")).trim();
    var token = /^token=(\d+)$/.exec(hash);
    if (token) { this.showToken(Number(token[1])); return; }
    var name = canonical(hash);
    if (name && name !== hash) history.replaceState(null, "", "#" + name);  // the address names it one way
    if (name) this.show(name);
    else if (hash) this.refuse(hash);
    else if (!this.current) this.show(this.start || shared.index.featured[0].name);
  };

  View.prototype.go = function (typed) {
    var name = canonical(typed);
    if (!name) { this.findToken(typed); return; }
    if (("#" + name) === window.location.hash) this.show(name);
    else window.location.hash = name;
  };

  View.prototype.refuse = function (text) {
    // nothing of the previous neuron stays on screen under a message about another
    this.current = null;
    this.content.textContent = "";
    this.input.value = text;
    this.say((text ? "\u201c" + text + "\u201d is not a neuron name nor a token of this model's vocabulary. " : "") +
      "Write a neuron as L<layer>N<index>, e.g. L3N50: layer(s) " + shared.index.layers.join(", ") +
      ", neurons 0-" + (shared.index.d_mlp - 1) + "; or a token, e.g. ' an' (in quotes to keep its leading space).");
  };

  // a typed token: as written, without the quotes around it, or with a leading space
  View.prototype.findToken = function (typed) {
    var self = this;
    var base = this.base;
    need("vocab", base + "vocab.js", function () { return shared.vocab; }, function (error) {
      if (error) { self.say(error); return; }
      var tokens = shared.vocab.tokens;
      var unquoted = typed.replace(/^(['"])(.*)\1$/, "$2");
      var tries = [unquoted, " " + unquoted];
      for (var i = 0; i < tries.length; i++) {
        var id = tokens.indexOf(tries[i]);
        if (id >= 0 && tries[i].length) { window.location.hash = "token=" + id; return; }
      }
      self.refuse(typed);
    });
  };

  View.prototype.showToken = function (id) {
    var self = this;
    var start = Math.floor(id / TOKEN_CHUNK) * TOKEN_CHUNK;
    var url = this.base + "tokens/" + String(start).padStart(6, "0") + ".js";
    need("vocab", this.base + "vocab.js", function () { return shared.vocab; }, function (error) {
      if (error) { self.say(error); return; }
      if (!(id < shared.vocab.tokens.length)) { self.refuse("token=" + id); return; }
      need("tokens/" + start, url, function () { return shared.tokenChunks[start]; }, function (error2) {
        if (error2) { self.say(error2); return; }
        var entry = shared.tokenChunks[start].entries[id];
        var token = shown(shared.vocab.tokens[id]);
        self.current = null;
        self.say("");
        self.input.value = token;
        var content = self.content;
        content.textContent = "";
        content.appendChild(node("h3", { class: "ns-title ns-token-title", text: "token " + token + " (id " + id + ")" }));
        var links = function (cls, label, pairs, format, none) {
          var line = node("p", { class: "ns-links " + cls }, [node("span", { text: label })]);
          pairs.forEach(function (pair) { line.appendChild(node("a", { href: "#" + pair[0], text: pair[0] + " " + format(pair[1]) })); });
          if (!pairs.length) line.appendChild(node("span", { text: none }));
          content.appendChild(line);
        };
        links("ns-sit", "Neurons whose top examples sit on it most (examples of " + shared.index.k + "): ", entry.at,
          function (c) { return "\u00d7" + c; }, "none: it is in no neuron's top examples");
        links("ns-write", "Neurons that write it most directly (W_out[n] \u00b7 W_U[:, " + token + "]): ", entry.w,
          function (v) { return number(v, 3); }, "none");
      });
    });
  };

  View.prototype.step = function (delta) {
    var index = shared.index;
    if (!this.current) return;
    var layerAt = index.layers.indexOf(this.current.layer);
    var n = this.current.n + delta;
    if (n < 0 && layerAt > 0) { layerAt -= 1; n = index.d_mlp - 1; }
    if (n >= index.d_mlp && layerAt < index.layers.length - 1) { layerAt += 1; n = 0; }
    if (n < 0 || n >= index.d_mlp) return;
    this.go("L" + index.layers[layerAt] + "N" + n);
  };

  View.prototype.show = function (name) {
    var index = shared.index;
    var match = NAME.exec(name);
    var self = this;
    if (!match) { this.refuse(name); return; }
    this.input.value = name;
    var layer = Number(match[1]), n = Number(match[2]);
    if (index.layers.indexOf(layer) < 0 || n >= index.d_mlp) {
      this.current = null;
      this.content.textContent = "";
      this.say(name + " is not in this book's data: it holds neurons 0-" + (index.d_mlp - 1) + " of layer(s) " + index.layers.join(", ") + ".");
      return;
    }
    var start = Math.floor(n / index.chunk) * index.chunk;
    var key = layer + "/" + start;
    var render = function (error) {
      if (error) { self.say(error); return; }
      var chunk = shared.chunks[key];
      if (chunk.run !== index.run) { self.say("The data file for " + name + " belongs to another run; execute this page again."); return; }
      self.say("");
      self.current = { layer: layer, n: n };
      self.render(layer, chunk.neurons[n - start], chunk.tokens);
    };
    if (!shared.chunks[key]) this.say("Loading " + name + "...");
    need(key, this.base + "L" + layer + "/" + String(start).padStart(5, "0") + ".js", function () { return shared.chunks[key]; }, render);
  };

  // one example: its tokens on the neuron's scale (only the example's token coloured when the
  // window's activations are not known), the example's token outlined, the ones after it faded
  function exampleLine(meta, ids, acts, focus, value, top, tokens) {
    var text = node("span", { class: "ns-text" });
    ids.forEach(function (id, i) {
      var act = acts ? acts[i] : (i === focus ? value : null);
      var alpha = top > 0 && act !== null ? Math.max(0, Math.min(1, act / top)) : 0;
      var classes = "ns-token" + (i === focus ? " ns-focus" : "") + (i > focus ? " ns-after" : "");
      text.appendChild(node("span", {
        class: classes, style: "background-color: rgba(" + HUE + ", " + alpha.toFixed(3) + ")",
        title: shown(tokens[id]) + ": " + (act === null ? "not recorded" : number(act, 3)), text: tokens[id],
      }));
    });
    return node("li", { class: "ns-example" }, [node("span", { class: "ns-meta", text: meta }), text]);
  }

  function counted(pairs, tokens) {
    return pairs.map(function (p) { return shown(tokens[p[0]]) + " \u00d7" + p[1]; }).join(", ");
  }

  View.prototype.render = function (layer, neuron, tokens) {
    var index = shared.index;
    var name = "L" + layer + "N" + neuron.n;
    var top = neuron.ex.length ? neuron.ex[0][0] : 0;
    var dead = neuron.fires === 0;
    var target = shown(index.target);
    var content = this.content;
    content.textContent = "";
    content.appendChild(node("h3", { class: "ns-title", text: name }));
    content.appendChild(node("p", {
      class: "ns-stats",
      text: "Fires (activation > 0) on " + neuron.fires.toLocaleString("en") + " of " + index.n_tokens.toLocaleString("en") +
        " tokens (" + (100 * neuron.rate).toFixed(2) + "%); mean activation " + number(neuron.mean, 4) + "; largest " + number(top, 3) +
        ", lowest " + number(neuron.low[0], 3) + ". Direct effect on " + target +
        " (W_out[n] \u00b7 W_U[:, " + target + "]): " + number(neuron.target, 3) + ", rank " + neuron.target_rank.toLocaleString("en") +
        " of the model's " + index.n_neurons_model.toLocaleString("en") + " neurons.",
    }));
    if (dead) {
      content.appendChild(node("p", { class: "ns-notice ns-dead", text: "Never fires on this corpus: its activation is at most " +
        number(top, 3) + " on all " + index.n_tokens.toLocaleString("en") + " tokens of " + index.n_docs.toLocaleString("en") +
        " documents, so it has no examples to show. A neuron can be dead on one corpus and alive on another." }));
    } else if (neuron.rate < index.rare) {
      content.appendChild(node("p", { class: "ns-notice ns-rare", text: "Fires rarely: on " + neuron.fires.toLocaleString("en") +
        " token(s), under " + (100 * index.rare).toFixed(1) + "% of the corpus; its examples are nearly all there is." }));
    }
    content.appendChild(node("div", { class: "ns-row" }, [this.histogram(neuron), this.logits(neuron, tokens)]));
    var links = node("p", { class: "ns-links" }, [node("span", { text: "Most similar output direction (cosine of W_out rows, layer " + layer + "): " })]);
    neuron.nb.forEach(function (pair) {
      var other = "L" + layer + "N" + pair[0];
      var link = node("a", { href: "#" + other, text: other + " " + number(pair[1], 2) });
      links.appendChild(link);
    });
    content.appendChild(links);
    if (index.corr) {
      var together = node("p", { class: "ns-links ns-together" }, [node("span", { text: "Fires together with (correlation of activations over " +
        index.corr.n_tokens.toLocaleString("en") + " tokens, " + index.corr.scope + "): " })]);
      neuron.corr.forEach(function (pair) { together.appendChild(node("a", { href: "#" + pair[0], text: pair[0] + " " + number(pair[1], 2) })); });
      if (!neuron.corr.length) together.appendChild(node("span", { text: "none (its activation never varies)" }));
      content.appendChild(together);
    }
    if (dead) return;
    content.appendChild(node("h4", { text: "Top " + neuron.ex.length + " examples, at most one per document" }));
    if (neuron.at.length) {
      content.appendChild(node("p", { class: "ns-summary ns-at", text: "They sit on " + counted(neuron.at, tokens) +
        (neuron.next.length ? "; the token after them is " + counted(neuron.next, tokens) : "") + "." }));
    }
    var legend = node("p", { class: "ns-meta" });
    legend.appendChild(document.createTextNode("activation: 0 or below"));
    legend.appendChild(node("span", { class: "ns-scale" }));
    legend.appendChild(document.createTextNode(number(top, 2) + " (this neuron's largest). The example's token is outlined; the " +
      index.context[1] + " tokens after it are faded. Hover a token for its activation."));
    content.appendChild(legend);
    var list = node("ol", { class: "ns-examples" });
    neuron.ex.forEach(function (e) {
      list.appendChild(exampleLine(number(e[0], 3) + " \u00b7 document " + e[1] + ", token " + e[2], e[4], e[5], e[3], e[0], top, tokens));
    });
    content.appendChild(list);
    content.appendChild(node("h4", { text: "Across its firing range" }));
    content.appendChild(node("p", { class: "ns-meta", text: "One token drawn at random (the same in every run) from each band of the tokens " +
      "where it fires, the bands cut at quantiles of their activation (to the nearest histogram bin). Only the drawn token is " +
      "coloured: the pass keeps the activations of the top examples' windows alone." }));
    var bands = node("ul", { class: "ns-examples ns-bands" });
    neuron.bands.forEach(function (b) {
      bands.appendChild(exampleLine(index.bands[b[0]] + " of its firing tokens (" + b[1].toLocaleString("en") + " tokens) \u00b7 " +
        number(b[2], 3) + " \u00b7 document " + b[3] + ", token " + b[4], b[6], null, b[5], b[2], top, tokens));
    });
    content.appendChild(bands);
    content.appendChild(node("h4", { text: "Its lowest activation" }));
    var low = neuron.low;
    content.appendChild(node("ul", { class: "ns-examples ns-lowest" }, [
      exampleLine(number(low[0], 3) + " \u00b7 document " + low[1] + ", token " + low[2], low[4], null, low[3], low[0], top, tokens),
    ]));
  };

  View.prototype.histogram = function (neuron) {
    var edges = shared.index.edges;
    var first = neuron.hist[0], counts = neuron.hist[1];
    var width = 380, height = 170, left = 34, bottom = 30, top = 18;
    var svg = svgNode("svg", { class: "ns-hist", width: width, height: height, viewBox: "0 0 " + width + " " + height, role: "img" });
    svg.appendChild(svgNode("text", { x: left, y: 11 }, "Activation histogram (tokens, log scale)"));
    var most = Math.max.apply(null, counts.concat([1]));
    var scale = Math.log10(most + 1);
    var step = (width - left - 8) / Math.max(counts.length, 1);
    var label = function (bucket) {
      if (bucket === 0) return "< " + edges[0];
      if (bucket === edges.length) return "\u2265 " + edges[edges.length - 1];
      return String(Math.round(edges[bucket - 1] * 1000) / 1000);
    };
    var range = function (bucket) {
      if (bucket === 0) return "below " + edges[0];
      if (bucket === edges.length) return edges[edges.length - 1] + " and above";
      return number(edges[bucket - 1], 2) + " to " + number(edges[bucket], 2);
    };
    counts.forEach(function (count, i) {
      if (!count) return;
      var h = (height - bottom - top) * Math.log10(count + 1) / scale;
      var bar = svgNode("rect", { class: "ns-bar", x: left + i * step, y: height - bottom - h, width: Math.max(step - 1, 1), height: h });
      bar.appendChild(svgNode("title", {}, range(first + i) + ": " + count.toLocaleString("en") + " tokens"));
      svg.appendChild(bar);
    });
    svg.appendChild(svgNode("line", { class: "ns-axis", x1: left, y1: height - bottom, x2: width - 8, y2: height - bottom }));
    svg.appendChild(svgNode("text", { x: 2, y: top + 8 }, most.toLocaleString("en")));
    svg.appendChild(svgNode("text", { x: 2, y: height - bottom }, "0"));
    var zero = edges.indexOf(0) + 1;  // the bucket that starts at activation 0
    if (zero > first && zero < first + counts.length) {
      var x = left + (zero - first) * step;
      svg.appendChild(svgNode("line", { class: "ns-axis", x1: x, y1: height - bottom, x2: x, y2: height - bottom + 4 }));
      // labelled only where it stays clear of the end labels (the tick alone marks it otherwise)
      if (x - left > 40 && width - 8 - x > 40) svg.appendChild(svgNode("text", { x: x, y: height - bottom + 13, "text-anchor": "middle" }, "0"));
    }
    if (counts.length) {
      svg.appendChild(svgNode("text", { x: left, y: height - bottom + 13 }, label(first)));
      svg.appendChild(svgNode("text", { x: width - 8, y: height - bottom + 13, "text-anchor": "end" }, label(first + counts.length)));
    }
    svg.appendChild(svgNode("text", { x: (left + width) / 2, y: height - 3, "text-anchor": "middle" }, "activation"));
    return svg;
  };

  View.prototype.logits = function (neuron, tokens) {
    var table = node("table", { class: "ns-logits" });
    table.appendChild(node("caption", { text: "Direct logit effect, W_out[n] \u00b7 W_U" }));
    table.appendChild(node("tr", {}, [node("th", { text: "raises" }), node("th", {}), node("th", { text: "lowers" }), node("th", {})]));
    for (var i = 0; i < Math.max(neuron.up.length, neuron.down.length); i++) {
      var up = neuron.up[i], down = neuron.down[i];
      table.appendChild(node("tr", {}, [
        node("td", { text: up ? shown(tokens[up[0]]) : "" }), node("td", { text: up ? number(up[1], 3) : "" }),
        node("td", { text: down ? shown(tokens[down[0]]) : "" }), node("td", { text: down ? number(down[1], 3) : "" }),
      ]));
    }
    return table;
  };

  function mount(id) {
    var root = document.getElementById(id);
    if (!root) return;
    addStyle();
    var view = new View(root);
    shared.views.push(view);
    if (shared.index) { view.ready(); return; }
    if (shared.views.length === 1) {
      loadScript(view.base + "index.js", function () {
        view.say("Could not load " + view.base + "index.js; execute this page again.");
      });
    }
  }

  window.Neuroscope = { mount: mount };
})();
