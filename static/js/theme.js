// theme.js — owns the colour theme before the first paint (a classic script, so no flash of the
// wrong theme): the choice saved by the header's toggle, else the system's prefers-color-scheme,
// followed live while no choice is saved. main.js wires the toggle through window.heraldTheme.
(function () {
  var KEY = 'herald.theme';
  var media = window.matchMedia('(prefers-color-scheme: dark)');
  function saved() {
    try {
      return localStorage.getItem(KEY);
    } catch (e) {
      return null;
    }
  }
  function apply() {
    var s = saved();
    var dark = s ? s === 'dark' : media.matches;
    document.documentElement.setAttribute('data-theme', dark ? 'dark' : 'light');
    return dark;
  }
  apply();
  media.addEventListener('change', apply);
  window.heraldTheme = {
    isDark: function () {
      return document.documentElement.getAttribute('data-theme') === 'dark';
    },
    set: function (dark) {
      try {
        localStorage.setItem(KEY, dark ? 'dark' : 'light');
      } catch (e) {
        /* private mode: the choice lasts for this page only */
      }
      document.documentElement.setAttribute('data-theme', dark ? 'dark' : 'light');
    },
  };
})();
