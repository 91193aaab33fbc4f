/* The site is read offline: stand-ins for what pkgdown.js takes from CDNs.
 * headroom (hides the navbar on scroll): a no-op; the navbar stays fixed.
 * bootstrap-toc: Toc.init builds the "On this page" list from the page's headings.
 * clipboard.js, mark.js, fuse.js, autocomplete.js: unsupported, so no copy buttons, no
 * search-term marking and no search box (hidden in extra.css). */
(function($) {
  if (!$.fn.headroom) {
    $.fn.headroom = function() { return this; };
  }
  if (!$.fn.autocomplete) {
    $.fn.autocomplete = function() { return this; };
  }
  if (!window.ClipboardJS) {
    window.ClipboardJS = { isSupported: function() { return false; } };
  }
  if (!window.Mark) {
    window.Mark = function() {};
    window.Mark.prototype.mark = function() {};
  }
  if (!window.Fuse) {
    window.Fuse = function() {};
    window.Fuse.prototype.search = function() { return []; };
  }
  if (!window.Toc) {
    var slug = function(text) {
      return text.trim().toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
    };
    var level = function(h) { return parseInt(h.tagName.substring(1), 10); };
    window.Toc = {
      // Two levels, like bootstrap-toc: the page's highest heading level and the next.
      init: function(opts) {
        var $nav = opts.$nav;
        if (!$nav || !$nav.length) return;
        var headings = opts.$scope.filter(function() {
          return !this.hasAttribute("data-toc-skip") && this.textContent.trim() !== "";
        }).get();
        if (!headings.length) return;
        var top = Math.min.apply(null, headings.map(level));
        var $root = $('<ul class="nav navbar-nav"></ul>');
        var $sub = null;
        headings.forEach(function(h) {
          var l = level(h);
          if (l > top + 1) return;
          if (!h.id) {
            var base = slug(h.textContent) || "section", id = base, i = 1;
            while (document.getElementById(id)) id = base + "-" + i++;
            h.id = id;
          }
          var $clone = $(h).clone();
          $clone.find(".anchor").remove();
          var $li = $('<li></li>').append(
            $('<a class="nav-link"></a>').attr("href", "#" + h.id).text($clone.text().trim()));
          if (l === top) {
            $root.append($li);
            $sub = null;
          } else {
            if (!$sub) {
              $sub = $('<ul class="nav navbar-nav"></ul>');
              var $last = $root.children("li").last();
              ($last.length ? $last : $root).append($sub);
            }
            $sub.append($li);
          }
        });
        $nav.append($root);
      }
    };
  }
})(window.jQuery);
