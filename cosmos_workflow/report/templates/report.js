"use strict";
// Filter, search, sort and lazy thumbnails. The cards are in the page already; this only shows,
// hides and reorders them. It reads user text through textContent and never writes HTML.
(function () {
  const main = document.getElementById("cards");
  const cards = Array.from(main.querySelectorAll(".card"));
  const statusFilter = document.getElementById("status-filter");
  const search = document.getElementById("search");
  const sort = document.getElementById("sort");
  const shown = document.getElementById("shown");
  const empty = document.getElementById("empty");
  let haystacks = null; // lower-cased text per card, built on the first search

  function haystack(card) {
    const parts = card.querySelectorAll(".name, .prompt, .problem .text");
    return Array.from(parts, (el) => el.textContent).join("\n").toLowerCase();
  }

  function applyFilter() {
    const status = statusFilter.value;
    const query = search.value.trim().toLowerCase();
    if (query && haystacks === null) haystacks = new Map(cards.map((c) => [c, haystack(c)]));
    let count = 0;
    for (const card of cards) {
      const visible = (!status || card.dataset.status === status) && (!query || haystacks.get(card).includes(query));
      card.hidden = !visible;
      if (visible) count += 1;
    }
    shown.textContent = count + " of " + cards.length + " shown";
    empty.hidden = count > 0;
  }

  const orders = {
    order: (a, b) => a.dataset.order - b.dataset.order,
    name: (a, b) => a.dataset.name.localeCompare(b.dataset.name, undefined, { numeric: true }) || orders.order(a, b),
    "tokens-desc": (a, b) => b.dataset.tokens - a.dataset.tokens || orders.order(a, b),
    "tokens-asc": (a, b) => a.dataset.tokens - b.dataset.tokens || orders.order(a, b),
  };

  function applySort() {
    const sorted = cards.slice().sort(orders[sort.value] || orders.order);
    main.append(...sorted);
  }

  function showImage(img) {
    img.src = img.dataset.src;
    img.removeAttribute("data-src");
  }

  function lazyImages() {
    const pending = main.querySelectorAll("img[data-src]");
    if (!("IntersectionObserver" in window)) {
      pending.forEach(showImage);
      return;
    }
    const observer = new IntersectionObserver(
      (entries) => {
        for (const entry of entries) {
          if (entry.isIntersecting) {
            observer.unobserve(entry.target);
            showImage(entry.target);
          }
        }
      },
      { rootMargin: "600px 0px" },
    );
    pending.forEach((img) => observer.observe(img));
  }

  let timer = 0;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(applyFilter, 120);
  });
  statusFilter.addEventListener("change", applyFilter);
  sort.addEventListener("change", applySort);
  lazyImages();
  applyFilter();
  if (sort.value !== "order") applySort();
  document.body.dataset.ready = "1";
  performance.mark("report-ready");
})();
